//! Which URLs an upstream may make `serve` fetch: file and `.metadata`
//! URLs come from upstream pages and redirects, so a hostile or broken
//! page must not turn the server into a client of the cloud metadata
//! service (169.254.169.254) or of hosts on the server's own network.
//!
//! The rule, per upstream: only http(s); never a link-local address; a
//! loopback, private or otherwise non-global address only when the
//! upstream itself is on one (a test index on 127.0.0.1, a corporate index
//! on 10.x). IP-literal hosts are checked before each request and each
//! redirect ([`Policy::check_url`], [`Policy::redirects`]); host names are
//! checked on the addresses they resolve to ([`PolicyResolver`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::upstream::{redact, Upstream};

/// Test-only, and hidden: when set (to anything but empty), every upstream
/// counts as being on a public address, whatever its address is. The
/// tests' upstreams all listen on 127.0.0.1; this lets them play a public
/// index that links to loopback. It only ever refuses more, never less.
pub const TEST_PUBLIC_UPSTREAMS_ENV: &str = "PYPI_MIRROR_TEST_UPSTREAMS_ARE_PUBLIC";

/// Redirects followed at most, as reqwest's default policy does.
const MAX_REDIRECTS: usize = 10;

/// Where an address is, as far as fetching from it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Reachable on the Internet.
    Global,
    /// Link-local (169.254.0.0/16, fe80::/10): cloud metadata services;
    /// never fetched from.
    LinkLocal,
    /// Any other address that is not global; the name says which kind.
    Local(&'static str),
}

/// Classify an IPv4 address.
pub fn reach_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip.is_unspecified() => Reach::Local("unspecified"),
        (0, _, _) => Reach::Local("\"this network\" (0.0.0.0/8)"),
        (127, _, _) => Reach::Local("loopback"),
        (169, 254, _) => Reach::LinkLocal,
        (10, _, _) | (192, 168, _) => Reach::Local("private (RFC 1918)"),
        (172, 16..=31, _) => Reach::Local("private (RFC 1918)"),
        (100, 64..=127, _) => Reach::Local("shared (CGNAT, 100.64.0.0/10)"),
        (192, 0, 0) => Reach::Local("IETF protocol assignment (192.0.0.0/24)"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Reach::Local("documentation"),
        (198, 18..=19, _) => Reach::Local("benchmarking (198.18.0.0/15)"),
        _ if ip.is_broadcast() => Reach::Local("broadcast"),
        (224..=239, _, _) => Reach::Local("multicast"),
        (240..=255, _, _) => Reach::Local("reserved (240.0.0.0/4)"),
        _ => Reach::Global,
    }
}

/// Classify an IPv6 address; forms that carry an IPv4 address (mapped,
/// NAT64, 6to4) are classified by that address.
pub fn reach_v6(ip: Ipv6Addr) -> Reach {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        reach_v4(Ipv4Addr::new(a, b, c, d))
    };
    if ip.is_unspecified() {
        return Reach::Local("unspecified");
    }
    if ip.is_loopback() {
        return Reach::Local("loopback");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return reach_v4(v4);
    }
    match s[0] {
        0xfe80..=0xfebf => Reach::LinkLocal,
        0xfec0..=0xfeff => Reach::Local("site-local (fec0::/10)"),
        0xfc00..=0xfdff => Reach::Local("unique-local (fc00::/7)"),
        0xff00..=0xffff => Reach::Local("multicast"),
        // NAT64 (RFC 6052): the IPv4 address it translates to.
        0x0064 if s[1] == 0xff9b && s[2..6] == [0; 4] => embedded(s[6], s[7]),
        0x2001 if s[1] == 0x0db8 => Reach::Local("documentation"),
        0x3fff if s[1] <= 0x0fff => Reach::Local("documentation"),
        // IETF protocol assignments (Teredo, benchmarking, ORCHID, …).
        0x2001 if s[1] < 0x0200 => Reach::Local("IETF protocol assignment (2001::/23)"),
        0x2002 => embedded(s[1], s[2]),
        0x2000..=0x3fff => Reach::Global,
        _ => Reach::Local("reserved"),
    }
}

/// Classify an address.
pub fn reach(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => reach_v4(v4),
        IpAddr::V6(v6) => reach_v6(v6),
    }
}

/// What one upstream may make the server fetch.
#[derive(Debug)]
pub struct Policy {
    /// The upstream, redacted, for messages.
    shown: String,
    /// Its own origin: always allowed, it is what the user chose.
    origin: url::Origin,
    /// Its host name (lower case) when it is a name, not an address.
    name: Option<String>,
    /// Whether it is itself on a non-global address, so that it may link
    /// to others. Learnt when its name is resolved (a name can move).
    local: AtomicBool,
    /// [`TEST_PUBLIC_UPSTREAMS_ENV`]: never local.
    forced_public: bool,
}

impl Policy {
    /// The policy of `up`; `forced_public` for tests only (see
    /// [`TEST_PUBLIC_UPSTREAMS_ENV`]).
    pub fn new(up: &Upstream, forced_public: bool) -> Self {
        let (name, local) = match up.url.host() {
            Some(Host::Ipv4(ip)) => (None, reach_v4(ip) != Reach::Global),
            Some(Host::Ipv6(ip)) => (None, reach_v6(ip) != Reach::Global),
            Some(Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                let localhost = d == "localhost" || d.ends_with(".localhost");
                (Some(d), localhost)
            }
            None => (None, false),
        };
        Self {
            shown: up.to_string(),
            origin: up.url.origin(),
            name,
            local: AtomicBool::new(local && !forced_public),
            forced_public,
        }
    }

    fn is_local(&self) -> bool {
        self.local.load(Ordering::Relaxed)
    }

    /// Why `ip` may not be fetched from, if it may not.
    fn refuse_ip(&self, ip: IpAddr) -> Option<String> {
        match reach(ip) {
            Reach::Global => None,
            Reach::LinkLocal => Some(format!("{ip} is a link-local address")),
            Reach::Local(_) if self.is_local() => None,
            Reach::Local(kind) => Some(format!(
                "{ip} is a {kind} address and upstream {} is not on one",
                self.shown
            )),
        }
    }

    /// Check a URL before it is fetched: its scheme, and its host when that
    /// is an address (names are checked by [`PolicyResolver`]).
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        let refuse = |why: &str| Err(format!("refused to fetch {}: {why}", redact(url.as_str())));
        if !matches!(url.scheme(), "http" | "https") {
            return refuse("not an http or https URL");
        }
        if url.origin() == self.origin {
            return Ok(());
        }
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(_)) => return Ok(()),
            None => return refuse("no host"),
        };
        match self.refuse_ip(ip) {
            None => Ok(()),
            Some(why) => refuse(&why),
        }
    }

    /// The redirect policy of this upstream's client: every target checked
    /// like a URL from a page, at most [`MAX_REDIRECTS`].
    pub fn redirects(self: &Arc<Self>) -> reqwest::redirect::Policy {
        let me = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match me.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        })
    }

    /// Filter the addresses `host` resolved to. The upstream's own name may
    /// resolve to anything but link-local, and tells whether it is local.
    fn filter(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let own = self.name.as_deref() == Some(host.as_str());
        if own && !self.forced_public {
            let local = addrs.iter().any(|a| reach(a.ip()) != Reach::Global);
            self.local.store(local, Ordering::Relaxed);
        }
        let mut refused = None;
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| {
                let why = match reach(a.ip()) {
                    Reach::LinkLocal => Some(format!("{} is a link-local address", a.ip())),
                    _ if own => None,
                    _ => self.refuse_ip(a.ip()),
                };
                let keep = why.is_none();
                if refused.is_none() {
                    refused = why;
                }
                keep
            })
            .collect();
        match refused {
            Some(why) if kept.is_empty() => Err(format!("refused to connect to {host}: {why}")),
            _ => Ok(kept),
        }
    }
}

/// The DNS resolver of one upstream's client: the system's resolver
/// (getaddrinfo, as reqwest's default), then [`Policy`]'s filter.
#[derive(Debug, Clone)]
pub struct PolicyResolver(pub Arc<Policy>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = policy.filter(&host, found)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reach {
        reach(s.parse().unwrap())
    }

    fn global(s: &str) -> bool {
        r(s) == Reach::Global
    }

    #[test]
    fn ipv4_addresses_are_classified() {
        for g in [
            "8.8.8.8",
            "151.101.0.223",
            "172.32.0.1",
            "100.128.0.1",
            "1.1.1.1",
        ] {
            assert!(global(g), "{g}");
        }
        assert_eq!(r("169.254.169.254"), Reach::LinkLocal);
        assert_eq!(r("169.254.0.1"), Reach::LinkLocal);
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.254", "CGNAT"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this network"),
            ("255.255.255.255", "broadcast"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("240.0.0.1", "reserved"),
            ("192.0.0.8", "IETF"),
        ] {
            match r(ip) {
                Reach::Local(k) => assert!(k.contains(kind), "{ip}: {k}"),
                other => panic!("{ip}: {other:?}"),
            }
        }
    }

    #[test]
    fn ipv6_addresses_are_classified_and_embedded_ipv4_by_its_address() {
        for g in [
            "2a04:4e42::223",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(global(g), "{g}");
        }
        for ll in [
            "fe80::1",
            "febf::1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert_eq!(r(ll), Reach::LinkLocal, "{ll}");
        }
        for (ip, kind) in [
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:100.64.0.1", "CGNAT"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2001::1", "IETF"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:c0a8:101::1", "private"),
            ("::7f00:1", "reserved"),
            ("100::1", "reserved"),
        ] {
            match r(ip) {
                Reach::Local(k) => assert!(k.contains(kind), "{ip}: {k}"),
                other => panic!("{ip}: {other:?}"),
            }
        }
    }

    fn policy(url: &str, forced_public: bool) -> Policy {
        Policy::new(&Upstream::parse("--upstream", url).unwrap(), forced_public)
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_public_upstream_may_send_us_to_public_addresses_only() {
        let p = policy("https://pypi.example/simple/", false);
        assert!(p.check_url(&url("https://files.example/x.whl")).is_ok());
        assert!(p.check_url(&url("https://151.101.0.223/x.whl")).is_ok());
        for bad in [
            "http://127.0.0.1:8080/x.whl",
            "http://[::1]/x.whl",
            "http://[::ffff:127.0.0.1]/x.whl",
            "http://10.0.0.1/x.whl",
            "http://100.64.1.1/x.whl",
            "http://[fd00::1]/x.whl",
            "http://0.0.0.0/x.whl",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/x.whl",
            "http://2130706433/x.whl",
            "file:///etc/passwd",
            "ftp://files.example/x.whl",
        ] {
            let e = p.check_url(&url(bad)).unwrap_err();
            assert!(e.starts_with("refused to fetch "), "{bad}: {e}");
        }
        let e = p
            .check_url(&url("http://u:pw@127.0.0.1/x.whl"))
            .unwrap_err();
        assert!(!e.contains("pw@") && e.contains("loopback"), "{e}");
        assert!(e.contains("upstream https://pypi.example/simple/"), "{e}");
    }

    #[test]
    fn a_local_upstream_may_send_us_to_local_addresses_but_not_link_local() {
        for up in [
            "http://127.0.0.1:3141/simple/",
            "http://10.1.2.3/simple/",
            "http://[::1]:8080/",
            "http://localhost:3141/",
            "http://pypi.localhost/",
        ] {
            let p = policy(up, false);
            assert!(
                p.check_url(&url("http://127.0.0.1:9/x.whl")).is_ok(),
                "{up}"
            );
            assert!(
                p.check_url(&url("http://192.168.0.1/x.whl")).is_ok(),
                "{up}"
            );
            assert!(
                p.check_url(&url("http://169.254.169.254/")).is_err(),
                "{up}"
            );
            assert!(p.check_url(&url("http://[fe80::1]/")).is_err(), "{up}");
            // The test-only override makes it public.
            let p = policy(up, true);
            assert!(
                p.check_url(&url("http://127.0.0.1:9/x.whl")).is_err(),
                "{up}"
            );
        }
        // Its own origin stays reachable even then.
        let p = policy("http://127.0.0.1:3141/simple/", true);
        assert!(p.check_url(&url("http://127.0.0.1:3141/f/x.whl")).is_ok());
        assert!(p.check_url(&url("http://127.0.0.1:3142/f/x.whl")).is_err());
    }

    #[test]
    fn resolved_addresses_are_filtered_and_the_upstream_name_says_where_it_is() {
        let a = |s: &str| SocketAddr::new(s.parse().unwrap(), 0);
        let p = policy("https://pypi.corp.example/simple/", false);
        // Before its own name resolved: public; a name resolving to a
        // private address is refused, link-local ones are dropped.
        let e = p.filter("evil.example", vec![a("10.0.0.5")]).unwrap_err();
        assert!(e.contains("evil.example") && e.contains("10.0.0.5"), "{e}");
        assert_eq!(
            p.filter("mixed.example", vec![a("169.254.169.254"), a("8.8.8.8")])
                .unwrap(),
            vec![a("8.8.8.8")]
        );
        // Its own name resolves to a private address: it is local now.
        assert_eq!(
            p.filter("PYPI.corp.example.", vec![a("10.0.0.1")]).unwrap(),
            vec![a("10.0.0.1")]
        );
        assert_eq!(
            p.filter("files.corp.example", vec![a("10.0.0.5")]).unwrap(),
            vec![a("10.0.0.5")]
        );
        assert!(p.filter("x.example", vec![a("169.254.169.254")]).is_err());
        assert!(p.check_url(&url("http://10.0.0.9/x.whl")).is_ok());
        // Forced public: learning does not make it local.
        let p = policy("https://pypi.corp.example/simple/", true);
        assert!(p.filter("pypi.corp.example", vec![a("10.0.0.1")]).is_ok());
        assert!(p.filter("files.corp.example", vec![a("10.0.0.5")]).is_err());
    }
}
