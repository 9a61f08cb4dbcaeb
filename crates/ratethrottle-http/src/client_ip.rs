//! Which address a request comes from: the peer, or a forwarded address vouched for by a
//! trusted proxy; IPv6 clients grouped by prefix.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use crate::Error;

/// The header a trusted proxy puts the client's address in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default; nginx, HAProxy, most load
    /// balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
    /// `X-Real-IP: client` (one address, set by the proxy).
    XRealIp,
}

impl ForwardedHeader {
    /// The header's name in lower case.
    pub const fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
            ForwardedHeader::XRealIp => "x-real-ip",
        }
    }
}

/// How the client address of a request is found.
///
/// By default it is the TCP peer. Forwarded headers are read only when the peer is a trusted
/// proxy, and then from the right: the proxies append, so the right-most address that is not
/// a trusted proxy is the first one a trusted party wrote. The left-most, which the client
/// itself can write, is never taken on trust.
///
/// ```
/// use ratethrottle_http::ClientIp;
///
/// let client_ip = ClientIp::new()
///     .trust_proxies(["10.0.0.0/8", "fd00::/8"])
///     .ipv6_prefix(64);
/// let peer: std::net::IpAddr = "10.0.0.5".parse()?;
/// let chain = ["203.0.113.7, 198.51.100.2, 10.0.0.9".as_bytes()];
/// let client = client_ip.resolve(Some(peer), chain).expect("the peer is known");
/// assert_eq!(client.as_str(), "198.51.100.2");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
    ipv6_prefix: u8,
    /// The first invalid setting, reported by the builder.
    invalid: Option<Invalid>,
}

#[derive(Clone, Debug)]
enum Invalid {
    Network(String),
    Prefix(u8),
}

impl Default for ClientIp {
    fn default() -> Self {
        ClientIp {
            trusted: Vec::new(),
            header: ForwardedHeader::default(),
            ipv6_prefix: ClientIp::DEFAULT_IPV6_PREFIX,
            invalid: None,
        }
    }
}

impl ClientIp {
    /// IPv6 clients are grouped by their /64: one home or one server gets one key, as ISPs
    /// hand out a /64 (or more) per customer.
    pub const DEFAULT_IPV6_PREFIX: u8 = 64;

    /// The peer address, no trusted proxies, IPv6 grouped by /64.
    pub fn new() -> Self {
        ClientIp::default()
    }

    /// Trusts the proxies in these networks (`"10.0.0.0/8"`, `"::1"`; a bare address is a
    /// single host). An invalid entry is reported by the builder's `build`.
    pub fn trust_proxies<I, T>(mut self, networks: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        for network in networks {
            let text = network.as_ref().trim();
            match parse_network(text) {
                Some(net) => self.trusted.push(net),
                None => {
                    self.invalid
                        .get_or_insert_with(|| Invalid::Network(text.to_owned()));
                }
            }
        }
        self
    }

    /// Reads the client address from `header` (default `X-Forwarded-For`) when the peer is a
    /// trusted proxy. Only one header is read: a proxy that sets one header usually passes
    /// the others through as the client sent them.
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Groups IPv6 clients by this prefix length (`0..=128`; 128 keys every address apart).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        if bits > 128 {
            self.invalid.get_or_insert(Invalid::Prefix(bits));
        }
        self.ipv6_prefix = bits.min(128);
        self
    }

    /// The header this resolver reads behind a trusted proxy.
    pub fn forwarded_header(&self) -> ForwardedHeader {
        self.header
    }

    /// Whether any proxy is trusted (otherwise headers are never read).
    pub fn trusts_proxies(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// The first invalid setting (a network that does not parse, a prefix over 128), if any.
    /// The policy builder's `build` reports the same.
    pub fn validate(&self) -> Result<(), Error> {
        self.clone().take_error().map_or(Ok(()), Err)
    }

    pub(crate) fn take_error(&mut self) -> Option<Error> {
        Some(match self.invalid.take()? {
            Invalid::Network(value) => Error::InvalidNetwork { value },
            Invalid::Prefix(bits) => Error::InvalidIpv6Prefix { bits },
        })
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client key of a request from `peer` carrying these values of the
    /// [`forwarded_header`](Self::forwarded_header) (in the order received). `None` when the
    /// peer is unknown and no trusted address was found.
    pub fn resolve<'a>(
        &self,
        peer: Option<IpAddr>,
        header_values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<ClientKey> {
        let peer = peer.map(canonical);
        let ip = match peer {
            Some(peer) if self.is_trusted(peer) => self.forwarded(peer, header_values),
            other => other?,
        };
        Some(ClientKey::new(ip, self.ipv6_prefix))
    }

    /// Walks the forwarded chain from the right, past trusted proxies, to the first address
    /// no trusted proxy is known to be. A malformed hop ends the walk at the last good one.
    fn forwarded<'a>(&self, peer: IpAddr, values: impl IntoIterator<Item = &'a [u8]>) -> IpAddr {
        let lines: Vec<&str> = values
            .into_iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect();
        let mut last = peer;
        for line in lines.iter().rev() {
            for hop in line.rsplit(',') {
                let parsed = match self.header {
                    ForwardedHeader::XForwardedFor | ForwardedHeader::XRealIp => parse_hop(hop),
                    ForwardedHeader::Forwarded => forwarded_for(hop).and_then(parse_hop),
                };
                let Some(ip) = parsed.map(canonical) else {
                    tracing::debug!(
                        header = self.header.name(),
                        hop = hop.trim(),
                        "malformed forwarded address; using the last good hop"
                    );
                    return last;
                };
                if !self.is_trusted(ip) {
                    return ip;
                }
                last = ip;
            }
        }
        last
    }
}

fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

/// The `for=` value of one `Forwarded` element (`for=1.2.3.4;proto=https`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (ip, port) = rest.split_once(']')?;
        if !(port.is_empty() || valid_port(port.strip_prefix(':')?)) {
            return None;
        }
        return ip.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (ip, port) = hop.rsplit_once(':')?;
    valid_port(port).then(|| ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))?
}

fn valid_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, from dual-stack sockets) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A client's key: its IPv4 address, or its IPv6 network (`2001:db8:1:2::/64`). Formatted on
/// the stack; [`as_str`](Self::as_str) borrows it.
#[derive(Clone, Copy)]
pub struct ClientKey {
    ip: IpAddr,
    text: [u8; Self::CAPACITY],
    len: u8,
}

impl ClientKey {
    /// `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128` fits with room to spare.
    const CAPACITY: usize = 56;

    pub(crate) fn new(ip: IpAddr, ipv6_prefix: u8) -> Self {
        let mut key = ClientKey {
            ip,
            text: [0; Self::CAPACITY],
            len: 0,
        };
        let _ = match ip {
            IpAddr::V4(v4) => {
                // The octets with itoa: several times faster than the formatting machinery.
                for (at, octet) in v4.octets().into_iter().enumerate() {
                    if at > 0 {
                        let _ = key.write_str(".");
                    }
                    let _ = key.write_str(itoa::Buffer::new().format(octet));
                }
                Ok(())
            }
            IpAddr::V6(_) if ipv6_prefix >= 128 => write!(key, "{ip}"),
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(ipv6_prefix));
                let network = Ipv6Addr::from(u128::from(v6) & mask.unwrap_or(0));
                key.ip = IpAddr::V6(network);
                write!(key, "{network}/{ipv6_prefix}")
            }
        };
        key
    }

    /// The key as text: `203.0.113.7` or `2001:db8:1:2::/64`.
    pub fn as_str(&self) -> &str {
        // Only whole `str`s are ever written (see `write_str`).
        std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The address (for IPv6, the network address of the group).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl fmt::Write for ClientKey {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let start = usize::from(self.len);
        let end = start + s.len();
        if end > Self::CAPACITY {
            return Err(fmt::Error);
        }
        self.text[start..end].copy_from_slice(s.as_bytes());
        self.len = end as u8;
        Ok(())
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKey({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_keys_read_as_std_writes_them() {
        for octets in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 0, 20, 9],
            [203, 0, 113, 7],
        ] {
            let ip = std::net::Ipv4Addr::from(octets);
            let key = ClientKey::new(IpAddr::V4(ip), ClientIp::DEFAULT_IPV6_PREFIX);
            assert_eq!(key.as_str(), ip.to_string());
        }
        for i in (0..=u32::MAX).step_by(7_919_891) {
            let ip = std::net::Ipv4Addr::from(i);
            assert_eq!(ClientKey::new(IpAddr::V4(ip), 64).as_str(), ip.to_string());
        }
    }

    fn resolve(client_ip: &ClientIp, peer: &str, headers: &[&str]) -> String {
        let peer = peer.parse().ok();
        client_ip
            .resolve(peer, headers.iter().map(|h| h.as_bytes()))
            .map(|key| key.to_string())
            .unwrap_or_else(|| "<none>".to_owned())
    }

    fn behind_proxies() -> ClientIp {
        ClientIp::new().trust_proxies(["10.0.0.0/8", "::1"])
    }

    #[test]
    fn untrusted_peers_are_taken_as_they_are_whatever_the_headers_say() {
        let client_ip = behind_proxies();
        assert_eq!(
            resolve(&client_ip, "203.0.113.9", &["1.1.1.1"]),
            "203.0.113.9"
        );
        assert_eq!(
            resolve(&ClientIp::new(), "10.0.0.1", &["1.1.1.1"]),
            "10.0.0.1"
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let client_ip = behind_proxies();
        let chain = "6.6.6.6, 203.0.113.7, 10.1.1.1, 10.2.2.2";
        assert_eq!(resolve(&client_ip, "10.0.0.1", &[chain]), "203.0.113.7");
        // Several header lines are one list, in order.
        let lines = ["6.6.6.6, 203.0.113.7", "10.1.1.1", "10.2.2.2"];
        assert_eq!(resolve(&client_ip, "10.0.0.1", &lines), "203.0.113.7");
        // Every hop trusted: the left-most.
        assert_eq!(
            resolve(&client_ip, "10.0.0.1", &["10.9.9.9, 10.1.1.1"]),
            "10.9.9.9"
        );
        // No header: the proxy itself.
        assert_eq!(resolve(&client_ip, "10.0.0.1", &[]), "10.0.0.1");
    }

    #[test]
    fn malformed_hops_end_the_walk_at_the_last_good_address() {
        let client_ip = behind_proxies();
        assert_eq!(
            resolve(&client_ip, "10.0.0.1", &["1.2.3.4, garbage"]),
            "10.0.0.1"
        );
        assert_eq!(
            resolve(&client_ip, "10.0.0.1", &["nope, 10.3.3.3"]),
            "10.3.3.3"
        );
        assert_eq!(resolve(&client_ip, "10.0.0.1", &[""]), "10.0.0.1");
        assert_eq!(
            resolve(&client_ip, "10.0.0.1", &["1.2.3.4:99999"]),
            "10.0.0.1"
        );
        let bytes: &[u8] = b"\xff\xfe";
        let key = client_ip.resolve("10.0.0.1".parse().ok(), [bytes]);
        assert_eq!(key.unwrap().as_str(), "10.0.0.1");
    }

    #[test]
    fn hops_may_carry_ports_and_brackets() {
        let client_ip = behind_proxies();
        assert_eq!(
            resolve(&client_ip, "::1", &["203.0.113.7:5555"]),
            "203.0.113.7"
        );
        assert_eq!(
            resolve(&client_ip, "::1", &["[2001:db8:aa:bb:1:2:3:4]:443"]),
            "2001:db8:aa:bb::/64"
        );
    }

    #[test]
    fn forwarded_and_x_real_ip_headers() {
        let forwarded = behind_proxies().header(ForwardedHeader::Forwarded);
        let value =
            r#"for=6.6.6.6, for="[2001:db8::7]:4711";proto=https, For=10.1.1.1;by=10.0.0.1"#;
        assert_eq!(resolve(&forwarded, "10.0.0.1", &[value]), "2001:db8::/64");
        assert_eq!(
            resolve(&forwarded, "10.0.0.1", &["for=unknown"]),
            "10.0.0.1"
        );
        assert_eq!(
            resolve(&forwarded, "10.0.0.1", &["proto=https"]),
            "10.0.0.1"
        );
        let real_ip = behind_proxies().header(ForwardedHeader::XRealIp);
        assert_eq!(
            resolve(&real_ip, "10.0.0.1", &["198.51.100.4"]),
            "198.51.100.4"
        );
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix() {
        let peer = "2001:db8:1:2:aaaa:bbbb:cccc:dddd";
        assert_eq!(resolve(&ClientIp::new(), peer, &[]), "2001:db8:1:2::/64");
        assert_eq!(
            resolve(&ClientIp::new().ipv6_prefix(48), peer, &[]),
            "2001:db8:1::/48"
        );
        assert_eq!(resolve(&ClientIp::new().ipv6_prefix(128), peer, &[]), peer);
        assert_eq!(resolve(&ClientIp::new().ipv6_prefix(0), peer, &[]), "::/0");
        // IPv4 seen through a dual-stack socket is IPv4.
        assert_eq!(
            resolve(&ClientIp::new(), "::ffff:192.0.2.1", &[]),
            "192.0.2.1"
        );
        let longest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let key = resolve(&ClientIp::new().ipv6_prefix(127), longest, &[]);
        assert_eq!(key, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
    }

    #[test]
    fn no_peer_and_no_trusted_hop_gives_no_key() {
        assert_eq!(resolve(&behind_proxies(), "", &["1.2.3.4"]), "<none>");
    }

    #[test]
    fn invalid_settings_are_kept_for_the_builder() {
        let mut bad = ClientIp::new().trust_proxies(["10.0.0.0/33", "10.0.0.0/8"]);
        assert_eq!(
            bad.take_error().unwrap().to_string(),
            "trusted proxy \"10.0.0.0/33\" is not an IP address or CIDR network (like \
             \"10.0.0.0/8\" or \"fd00::/8\")"
        );
        assert!(bad.trusts_proxies());
        let mut bad = ClientIp::new().ipv6_prefix(129);
        assert!(bad.take_error().is_some());
    }
}
