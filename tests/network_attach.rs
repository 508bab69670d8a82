//! Guest NIC attachment against the real kernel: veth pairs whose guest end moves into a
//! namespace standing in for a container, and persistent taps for VMs, attached to a bridge.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::NetNs;
use ferrite::guest::nics::stable_mac;
use ferrite::network::attach::{attach, detach, NicKind, NicSpec};
use ferrite::types::Mac;

fn nic(bridge: &str, mac: Mac) -> NicSpec {
    NicSpec {
        bridge: bridge.into(),
        tag: None,
        trunks: Vec::new(),
        mac,
        mtu: None,
        rate: None,
    }
}
use ferrite::network::Kernel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_on_a_bridge_talk_and_detach_leaves_nothing() {
    let app = NetNs::new("att");
    let g1 = NetNs::new("g1");
    let g2 = NetNs::new("g2");
    let (k, _events) =
        Kernel::connect(Some(&PathBuf::from(app.path()))).expect("netlink in the namespace");
    k.create_bridge("br0", false, false, None)
        .await
        .expect("bridge");
    let mut atts = Vec::new();
    for (i, g) in [&g1, &g2].into_iter().enumerate() {
        let mac = stable_mac(&format!("10{i}"), "net0");
        let kind = NicKind::Veth {
            host: format!("veth10{i}"),
            peer: format!("gp10{i}"),
            netns: Some(PathBuf::from(g.path())),
            guest_name: Some("eth0".into()),
        };
        let a = attach(
            &k,
            &kind,
            &NicSpec {
                mtu: Some(1400),
                ..nic("br0", mac)
            },
        )
        .await
        .expect("attach");
        assert_eq!(a.host_if, format!("veth10{i}"));
        // The guest end is in the guest's namespace with the stable MAC and MTU.
        let links = g.links();
        let peer = &links["eth0"];
        assert_eq!(peer["address"], mac.to_string());
        assert_eq!(peer["mtu"], 1400);
        g.ip("link set eth0 up");
        g.ip(&format!("addr add 10.88.0.{}/24 dev eth0", i + 1));
        atts.push(a);
    }
    let links = app.links();
    assert_eq!(links["veth100"]["master"], "br0");
    assert_eq!(links["veth101"]["master"], "br0");
    let t0 = Instant::now();
    while !g1.exec_ok("ping -c1 -W1 10.88.0.2") {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "guests cannot reach each other"
        );
    }
    // A tap for a VM, attached the same way.
    let mac = stable_mac("200", "net0");
    let a = attach(
        &k,
        &NicKind::Tap {
            name: "tap200i0".into(),
        },
        &nic("br0", mac),
    )
    .await
    .expect("tap");
    let links = app.links();
    assert_eq!(links["tap200i0"]["master"], "br0");
    assert_eq!(links["tap200i0"]["linkinfo"]["info_kind"], "tun");
    assert!(
        !common::sh("ip -o link show").contains("tap200i0"),
        "the tap must be made in the managed namespace, not the host's"
    );
    detach(&k, &a.host_if).await.expect("detach tap");
    // Detaching a veth removes both ends.
    detach(&k, &atts[0].host_if).await.expect("detach");
    assert!(!app.links().contains_key("veth100"));
    assert!(!g1.links().contains_key("eth0"));
    // Failures leave nothing: unknown bridge, a multicast MAC (the kernel refuses it; a
    // malformed one cannot be expressed at all), VLAN tag on a plain bridge.
    let mac = stable_mac("300", "net0");
    let bad = [
        nic("nobr", mac),
        nic("br0", Mac::new([0x03, 0, 0, 0, 0, 1])),
        NicSpec {
            tag: Some(10),
            ..nic("br0", mac)
        },
    ];
    for spec in bad {
        let kind = NicKind::Veth {
            host: "veth300".into(),
            peer: "gp300".into(),
            netns: None,
            guest_name: None,
        };
        assert!(attach(&k, &kind, &spec).await.is_err(), "{spec:?}");
        let links = app.links();
        assert!(
            !links.contains_key("veth300") && !links.contains_key("gp300"),
            "left behind after {spec:?}"
        );
    }
}
