//! Addresses and default routes.

use super::*;

impl Kernel {
    /// Adds an IPv4 default route through `gw`.
    pub async fn route_add_default_v4(&self, gw: std::net::Ipv4Addr) -> Result<(), KernelError> {
        self.wrote();
        self.handle
            .route()
            .add(
                rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .gateway(gw)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("adding a default route via {gw}"), e))
    }

    /// Adds an IPv6 default route through `gw`.
    pub async fn route_add_default_v6(&self, gw: std::net::Ipv6Addr) -> Result<(), KernelError> {
        self.wrote();
        self.handle
            .route()
            .add(
                rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .gateway(gw)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("adding a default route via {gw}"), e))
    }

    /// Adds a default route through `gw` leaving by link `index` (a bridge's `gateway`).
    pub async fn route_add_default_via(
        &self,
        index: u32,
        gw: std::net::IpAddr,
    ) -> Result<(), KernelError> {
        self.wrote();
        self.handle
            .route()
            .add(default_via(index, gw))
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("adding a default route via {gw}"), e))
    }

    /// Deletes the default route through `gw` leaving by link `index` (undo of the above).
    pub async fn route_del_default_via(
        &self,
        index: u32,
        gw: std::net::IpAddr,
    ) -> Result<(), KernelError> {
        self.wrote();
        self.handle
            .route()
            .del(default_via(index, gw))
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("deleting the default route via {gw}"), e))
    }

    pub async fn addr_add(&self, index: u32, name: &str, cidr: &str) -> Result<(), KernelError> {
        let (ip, len) = parse_cidr(cidr).ok_or_else(|| KernelError::Netlink {
            op: format!("adding {cidr} to {name}"),
            message: "not an address/prefix".into(),
            errno: None,
        })?;
        self.wrote();
        self.handle
            .address()
            .add(index, ip, len)
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("adding {cidr} to {name}"), e))
    }

    pub async fn addr_del(&self, index: u32, name: &str, cidr: &str) -> Result<(), KernelError> {
        let turn = self.dumps.lock().await;
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        // The whole dump is read before anything else is sent on the socket.
        let mut found = None;
        while let Some(msg) = s
            .try_next()
            .await
            .map_err(|e| KernelError::from_rtnl("listing addresses", e))?
        {
            if found.is_none() && address_string(&msg).as_deref() == Some(cidr) {
                found = Some(msg);
            }
        }
        drop(turn);
        if let Some(msg) = found {
            self.wrote();
            return self
                .handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| KernelError::from_rtnl(format!("removing {cidr} from {name}"), e));
        }
        Ok(())
    }
}

/// The default route through `gw` leaving by link `index`, for either address family.
fn default_via(index: u32, gw: std::net::IpAddr) -> rtnetlink::packet_route::route::RouteMessage {
    match gw {
        std::net::IpAddr::V4(g) => rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .output_interface(index)
            .gateway(g)
            .build(),
        std::net::IpAddr::V6(g) => rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .output_interface(index)
            .gateway(g)
            .build(),
    }
}
