//! Guest NIC rate limits, programmed on the host end of the NIC with traffic control over
//! rtnetlink (no `tc` process).
//!
//! Both directions are enforced on the host side, where the guest cannot undo them (a
//! container's root owns its own network namespace and could remove a qdisc on its `eth0`):
//! - traffic *to* the guest leaves the host end: a token-bucket (`tbf`) root qdisc shapes it;
//! - traffic *from* the guest enters the host end: an `ingress` qdisc with a `matchall`
//!   filter and a `police` action drops what exceeds the rate (as Proxmox VE and LXC do;
//!   ingress traffic can only be policed, not queued, without an extra `ifb` device).
//!
//! `netlink-packet-route` has no `tbf` or `police` types, so their option structures are
//! encoded here from the kernel's UAPI (`linux/pkt_sched.h`, `linux/pkt_cls.h`).

use futures_util::StreamExt;
use rtnetlink::packet_core::{DefaultNla, NetlinkMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};
use rtnetlink::packet_route::tc::{
    TcAction, TcActionAttribute, TcActionOption, TcAttribute, TcFilterMatchAllOption, TcHandle,
    TcMessage, TcOption,
};
use rtnetlink::packet_route::RouteNetlinkMessage;

use super::netlink::{Kernel, KernelError};

/// A NIC's limits in bytes per second, from the guest's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateLimit {
    /// What the guest may receive per second.
    pub rx: Option<u64>,
    /// What the guest may send per second.
    pub tx: Option<u64>,
    /// Bytes allowed at line rate before the limit bites.
    pub burst: u32,
}

impl RateLimit {
    /// From megabits per second each way and a burst in KiB; `None` when no direction is
    /// limited.
    pub fn from_mbps(rx: Option<f64>, tx: Option<f64>, burst_kib: Option<u64>) -> Option<Self> {
        let bps = |m: Option<f64>| {
            m.filter(|m| *m > 0.0)
                .map(|m| (m * 1_000_000.0 / 8.0).max(1.0) as u64)
        };
        let r = RateLimit {
            rx: bps(rx),
            tx: bps(tx),
            burst: burst_kib
                .map(|k| (k.saturating_mul(1024)).min(u64::from(u32::MAX)) as u32)
                .unwrap_or(0),
        };
        (r.rx.is_some() || r.tx.is_some()).then_some(r)
    }

    /// The burst for a rate: what was asked, else 10 ms at the rate; never below
    /// [`MIN_BURST`].
    fn burst_for(&self, rate: u64) -> u32 {
        let want = if self.burst > 0 {
            u64::from(self.burst)
        } else {
            rate / 100
        };
        want.clamp(u64::from(MIN_BURST), u64::from(u32::MAX)) as u32
    }
}

/// The smallest burst: one full GSO packet (64 KiB) plus a frame. The police action charges
/// a whole segmentation-offload packet against the bucket at once, and a packet longer than
/// the bucket can ever hold would be dropped every time, stalling TCP from the guest.
const MIN_BURST: u32 = 64 * 1024 + 1514;
/// `TC_LINKLAYER_ETHERNET`: the kernel computes transmit times itself instead of reading
/// a rate table (which it then only requires to be present, for `police`).
const LINKLAYER_ETHERNET: u8 = 1;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
const TCA_POLICE_TBF: u16 = 1;
const TCA_POLICE_RATE: u16 = 2;
const TCA_POLICE_RESULT: u16 = 5;
const TCA_POLICE_RATE64: u16 = 8;
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
/// `PSCHED_SHIFT`: the kernel's traffic-control tick is 64 ns.
const PSCHED_TICK_NS: u64 = 64;
/// `ETH_P_ALL` in network byte order, as the filter header's protocol half wants it.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();
/// The handle of the ingress qdisc, `ffff:`.
const INGRESS: u32 = 0xffff_0000;

/// `struct tc_ratespec` (12 bytes). Rates of 2^32 bytes/s and more saturate here and travel
/// in a separate 64-bit attribute.
fn ratespec(rate: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(12);
    b.push(3); // cell_log: any non-zero value; unused with an Ethernet link layer
    b.push(LINKLAYER_ETHERNET);
    b.extend_from_slice(&0u16.to_ne_bytes()); // overhead
    b.extend_from_slice(&0i16.to_ne_bytes()); // cell_align
    b.extend_from_slice(&0u16.to_ne_bytes()); // mpu
    b.extend_from_slice(&(rate.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
    b
}

/// The `tbf` qdisc options for shaping to `rate` bytes/s with `burst` bytes, queueing at
/// most 50 ms of traffic beyond the burst.
fn tbf_options(rate: u64, burst: u32) -> Vec<TcOption> {
    let limit = (rate / 20 + u64::from(burst)).min(u64::from(u32::MAX)) as u32;
    let mut parms = ratespec(rate); // rate
    parms.extend_from_slice(&[0u8; 12]); // peakrate: none
    parms.extend_from_slice(&limit.to_ne_bytes());
    parms.extend_from_slice(&0u32.to_ne_bytes()); // buffer: given by TCA_TBF_BURST
    parms.extend_from_slice(&0u32.to_ne_bytes()); // mtu: no peak rate
    let mut o = vec![
        TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, parms)),
        TcOption::Other(DefaultNla::new(TCA_TBF_BURST, burst.to_ne_bytes().to_vec())),
    ];
    if rate > u64::from(u32::MAX) {
        o.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            rate.to_ne_bytes().to_vec(),
        )));
    }
    o
}

/// The `police` action dropping what exceeds `rate` bytes/s after a `burst`.
fn police_action(rate: u64, burst: u32) -> TcAction {
    // The burst travels as the time it takes at the rate, in ticks.
    let ticks = (u64::from(burst) * 1_000_000_000 / rate.max(1) / PSCHED_TICK_NS)
        .min(u64::from(u32::MAX)) as u32;
    let mut p = Vec::with_capacity(56);
    p.extend_from_slice(&0u32.to_ne_bytes()); // index: the kernel picks one
    p.extend_from_slice(&TC_ACT_SHOT.to_ne_bytes()); // exceeding packets are dropped
    p.extend_from_slice(&0u32.to_ne_bytes()); // limit
    p.extend_from_slice(&ticks.to_ne_bytes()); // burst
    p.extend_from_slice(&u32::MAX.to_ne_bytes()); // mtu: any size, GSO included
    p.extend(ratespec(rate));
    p.extend_from_slice(&[0u8; 12]); // peakrate
    p.extend_from_slice(&[0u8; 12]); // refcnt, bindcnt, capab
    let mut opts = vec![
        TcActionOption::Other(DefaultNla::new(TCA_POLICE_TBF, p)),
        // A rate table must be present; with an Ethernet link layer its content is unused.
        TcActionOption::Other(DefaultNla::new(TCA_POLICE_RATE, vec![0u8; 1024])),
        TcActionOption::Other(DefaultNla::new(
            TCA_POLICE_RESULT,
            TC_ACT_OK.to_ne_bytes().to_vec(),
        )),
    ];
    if rate > u64::from(u32::MAX) {
        opts.push(TcActionOption::Other(DefaultNla::new(
            TCA_POLICE_RATE64,
            rate.to_ne_bytes().to_vec(),
        )));
    }
    let mut a = TcAction::default();
    a.tab = 1;
    a.attributes = vec![
        TcActionAttribute::Kind("police".into()),
        TcActionAttribute::Options(opts),
    ];
    a
}

/// A request the kernel refuses because a traffic-control module is missing (ENOENT: "TC
/// classifier not found", "Failed to load TC action module"; EOPNOTSUPP) becomes
/// [`KernelError::Unsupported`] naming `field`.
async fn send_for(
    k: &Kernel,
    msg: RouteNetlinkMessage,
    op: String,
    extra_flags: u16,
    field: &str,
    needs: &str,
) -> Result<(), KernelError> {
    match send(k, msg, op, extra_flags).await {
        Err(KernelError::Netlink {
            errno: Some(e),
            message,
            ..
        }) if e == libc::ENOENT || e == libc::EOPNOTSUPP => Err(KernelError::Unsupported {
            field: field.into(),
            message: format!("this host's kernel cannot enforce it: {needs} missing ({message})"),
        }),
        r => r,
    }
}

async fn send(
    k: &Kernel,
    msg: RouteNetlinkMessage,
    op: String,
    extra_flags: u16,
) -> Result<(), KernelError> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
    k.wrote();
    let mut h = k.handle();
    let mut resp = h
        .request(req)
        .map_err(|e| KernelError::from_rtnl(op.clone(), e))?;
    while let Some(m) = resp.next().await {
        if let rtnetlink::packet_core::NetlinkPayload::Error(e) = m.payload {
            if e.code.is_some() {
                return Err(KernelError::from_rtnl(
                    op,
                    rtnetlink::Error::NetlinkError(e),
                ));
            }
        }
    }
    Ok(())
}

/// Programs `limit` on the host end `index`/`name` of a guest NIC (a fresh link: nothing to
/// replace). A kernel without the needed traffic-control modules gets a clear error naming
/// the direction; the caller removes the link, which takes any qdisc with it.
pub async fn apply(
    k: &Kernel,
    index: u32,
    name: &str,
    limit: &RateLimit,
) -> Result<(), KernelError> {
    let ifindex = index as i32;
    if let Some(rate) = limit.rx {
        let mut m = TcMessage::with_index(ifindex);
        m.header.parent = TcHandle::ROOT;
        m.header.handle = TcHandle { major: 1, minor: 0 };
        m.attributes.push(TcAttribute::Kind("tbf".into()));
        m.attributes.push(TcAttribute::Options(tbf_options(
            rate,
            limit.burst_for(rate),
        )));
        send_for(
            k,
            RouteNetlinkMessage::NewQueueDiscipline(m),
            format!("limiting what {name} sends to its guest (qdisc tbf)"),
            NLM_F_CREATE | libc::NLM_F_REPLACE as u16,
            "rate/rx_mbps",
            "the tbf qdisc (sch_tbf)",
        )
        .await?;
    }
    if let Some(rate) = limit.tx {
        let op = format!(
            "policing what the guest sends into {name} (rate.tx_mbps: ingress qdisc, matchall filter, police action)"
        );
        let mut q = TcMessage::with_index(ifindex);
        q.header.parent = TcHandle::INGRESS;
        q.header.handle = TcHandle::from(INGRESS);
        q.attributes.push(TcAttribute::Kind("ingress".into()));
        send_for(
            k,
            RouteNetlinkMessage::NewQueueDiscipline(q),
            op.clone(),
            NLM_F_CREATE | libc::NLM_F_EXCL as u16,
            "rate/tx_mbps",
            "the ingress qdisc (sch_ingress)",
        )
        .await?;
        let mut f = TcMessage::with_index(ifindex);
        f.header.parent = TcHandle::from(INGRESS);
        f.header.info = u32::from(TcHandle {
            major: 1, // priority
            minor: ETH_P_ALL_BE,
        });
        f.attributes.push(TcAttribute::Kind("matchall".into()));
        f.attributes
            .push(TcAttribute::Options(vec![TcOption::MatchAll(
                TcFilterMatchAllOption::Action(vec![police_action(rate, limit.burst_for(rate))]),
            )]));
        send_for(
            k,
            RouteNetlinkMessage::NewTrafficFilter(f),
            op,
            NLM_F_CREATE | libc::NLM_F_EXCL as u16,
            "rate/tx_mbps",
            "the matchall classifier and police action (cls_matchall, act_police)",
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::Nla;

    #[test]
    fn rates_convert_from_megabits_and_bursts_default_sensibly() {
        let r = RateLimit::from_mbps(Some(8.0), Some(0.5), None).expect("limit");
        assert_eq!(r.rx, Some(1_000_000));
        assert_eq!(r.tx, Some(62_500));
        assert_eq!(
            r.burst_for(1_000_000),
            MIN_BURST,
            "a GSO packet always fits"
        );
        assert_eq!(r.burst_for(1_250_000_000), 12_500_000);
        let r = RateLimit::from_mbps(Some(8.0), None, Some(256)).expect("limit");
        assert_eq!((r.tx, r.burst_for(1)), (None, 256 * 1024));
        let r = RateLimit::from_mbps(Some(8.0), None, Some(1)).expect("limit");
        assert_eq!(r.burst_for(1), MIN_BURST);
        assert_eq!(RateLimit::from_mbps(None, None, None), None);
    }

    #[test]
    fn option_structures_have_the_kernels_sizes() {
        assert_eq!(ratespec(1).len(), 12);
        let TcOption::Other(p) = &tbf_options(1_000_000, 16384)[0] else {
            panic!("tbf parms")
        };
        assert_eq!(p.value_len(), 36, "struct tc_tbf_qopt");
        let a = police_action(1_000_000, 16384);
        assert_eq!(
            ETH_P_ALL_BE.to_ne_bytes(),
            [0x00, 0x03],
            "network byte order"
        );
        let TcActionAttribute::Options(o) = &a.attributes[1] else {
            panic!("police options")
        };
        let TcActionOption::Other(p) = &o[0] else {
            panic!("police parms")
        };
        let mut b = vec![0u8; p.value_len()];
        p.emit_value(&mut b);
        assert_eq!(b.len(), 56, "struct tc_police");
        // 16 KiB at 1 MB/s is 16.384 ms = 256,000 ticks of 64 ns.
        assert_eq!(
            u32::from_ne_bytes(b[12..16].try_into().expect("4")),
            256_000
        );
        assert_eq!(
            tbf_options(5_000_000_000, 1).len(),
            3,
            "64-bit rate attribute"
        );
    }
}
