//! Fuzzing what clients send (issue 15): `X-Forwarded-For`, `Forwarded` and `X-Real-IP`
//! values of any bytes. No panic; the key is the peer, or an address a trusted proxy named.

use std::net::IpAddr;

use proptest::prelude::*;
use ratethrottle_http::{ClientIp, ForwardedHeader};

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let hop = prop_oneof![
        Just("10.0.0.7".to_owned()),
        Just("203.0.113.9".to_owned()),
        Just("[2001:db8::1]:443".to_owned()),
        Just("for=\"[2001:db8::2]\"".to_owned()),
        Just("for=198.51.100.1;proto=https".to_owned()),
        Just("unknown".to_owned()),
        any::<String>(),
    ];
    prop_oneof![
        prop::collection::vec(hop, 0..8).prop_map(|hops| hops.join(",").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #[test]
    fn any_forwarded_header_resolves_to_an_address(
        values in prop::collection::vec(header_value(), 0..4),
        which in 0usize..3,
        trusted_peer in any::<bool>(),
    ) {
        let header = [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded, ForwardedHeader::XRealIp][which];
        let resolver = ClientIp::new().trust_proxies(["10.0.0.0/8"]).header(header);
        let peer: IpAddr = if trusted_peer { "10.1.1.1" } else { "192.0.2.1" }.parse().unwrap();
        let key = resolver.resolve(Some(peer), values.iter().map(Vec::as_slice));
        let key = key.expect("a known peer always gives a key");
        let ip: Result<IpAddr, _> = key.as_str().split('/').next().unwrap().parse();
        prop_assert!(ip.is_ok(), "{}", key.as_str());
        if !trusted_peer {
            prop_assert_eq!(key.as_str(), "192.0.2.1", "an untrusted peer's header is ignored");
        }
    }
}
