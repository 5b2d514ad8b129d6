//! The TCP congestion control of the daemon's iSCSI connections (`--tcp-congestion`,
//! `tcp_congestion` in the config file).
//!
//! A connection's congestion control is its sender's: the target's sockets set how fast
//! Data-In, R2T and responses go out, the initiator's how its Data-Out comes in. By
//! default the accepted sockets keep the kernel's default
//! (`net.ipv4.tcp_congestion_control`). Where that default is `bbr` and the interface has
//! no `fq` qdisc, the kernel paces every send itself, which on a fast LAN or loopback
//! holds large reads back (docs/performance.md, the twenty-second round); an operator
//! can give the target's connections another (`cubic`, `dctcp` in a data centre) without
//! changing the machine's. The store's connections to Gluster (libgfapi's sockets) keep
//! the kernel's default.
//!
//! The name is checked against the kernel when it is given (start, reload): a name the
//! kernel does not offer, or one a daemon without `CAP_NET_ADMIN` may not choose, is
//! refused with the kernel's lists, rather than found out at every connection.

use std::fmt;
use std::io;
use std::str::FromStr;

/// The kernel's limit on a name, the terminating NUL included (`TCP_CA_NAME_MAX`).
const NAME_MAX: usize = 16;

/// A congestion control algorithm's name, e.g. `cubic`: at most 15 bytes of ASCII letters,
/// digits, `_` and `-`. `Copy`, so it travels in [`crate::ConnectionLimits`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Congestion {
    name: [u8; NAME_MAX],
    len: u8,
}

impl Congestion {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.name[..usize::from(self.len)]).expect("checked ASCII")
    }

    /// Whether this kernel lets the daemon give sockets this algorithm: set on a socket
    /// that is never connected. Loads the algorithm's module where the daemon may.
    pub fn check(&self) -> Result<(), String> {
        let probe = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .or_else(|_| socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None))
            .map_err(|e| format!("tcp congestion control {self}: no socket to try it on: {e}"))?;
        probe
            .set_tcp_congestion(self.as_str().as_bytes())
            .map_err(|e| self.refused(&e, &KernelLists::read()))
    }

    /// Gives `socket` (an accepted connection) this algorithm.
    pub fn apply(&self, socket: impl std::os::fd::AsFd) -> io::Result<()> {
        socket2::SockRef::from(&socket).set_tcp_congestion(self.as_str().as_bytes())
    }

    /// Why the kernel refused the name, said with its lists.
    fn refused(&self, err: &io::Error, lists: &KernelLists) -> String {
        match err.raw_os_error() {
            Some(libc::ENOENT) => format!(
                "tcp congestion control {self}: this kernel does not offer it (available: {}; \
                 another needs its module, tcp_{self})",
                lists.available
            ),
            Some(libc::EPERM) => format!(
                "tcp congestion control {self}: not allowed without CAP_NET_ADMIN (allowed: {}; \
                 the sysctl net.ipv4.tcp_allowed_congestion_control adds more)",
                lists.allowed
            ),
            _ => format!("tcp congestion control {self}: {err}"),
        }
    }
}

/// The kernel's lists of algorithms, for error messages; `unknown` where unreadable.
struct KernelLists {
    available: String,
    allowed: String,
}

impl KernelLists {
    fn read() -> KernelLists {
        let read = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into())
        };
        KernelLists {
            available: read("tcp_available_congestion_control"),
            allowed: read("tcp_allowed_congestion_control"),
        }
    }
}

impl FromStr for Congestion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() >= NAME_MAX {
            return Err(format!(
                "{text:?} is not a TCP congestion control name (1 to {} characters, e.g. cubic)",
                NAME_MAX - 1
            ));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(format!(
                "{text:?} is not a TCP congestion control name ({c:?}: only letters, digits, \
                 _ and -)"
            ));
        }
        let mut name = [0; NAME_MAX];
        name[..text.len()].copy_from_slice(text.as_bytes());
        Ok(Congestion {
            name,
            len: text.len() as u8,
        })
    }
}

impl fmt::Display for Congestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Congestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Congestion({})", self.as_str())
    }
}

/// `--tcp-congestion`: a name this kernel lets the daemon use.
pub(crate) fn parse_congestion(text: &str) -> Result<Congestion, String> {
    let cc: Congestion = text.parse()?;
    cc.check()?;
    Ok(cc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built into every Linux kernel (it cannot be a module), so always offered.
    const ALWAYS: &str = "reno";

    #[test]
    fn names_are_the_kernels_form() {
        for good in ["cubic", "bbr", "dctcp", "h-tcp_2", "fifteen_chars_x"] {
            let cc: Congestion = good.parse().unwrap();
            assert_eq!(cc.to_string(), good);
            assert_eq!(cc.as_str(), good);
        }
        for (bad, why) in [
            ("", "1 to 15 characters"),
            ("sixteen_chars_xy", "1 to 15 characters"),
            ("cu bic", "' '"),
            ("../cubic", "'.'"),
            ("cubic\n", "'\\n'"),
        ] {
            let err = bad.parse::<Congestion>().unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn an_accepted_connection_gets_the_algorithm() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let cc = parse_congestion(ALWAYS).unwrap();
        cc.apply(&accepted).unwrap();
        let now = socket2::SockRef::from(&accepted).tcp_congestion().unwrap();
        let now: Vec<u8> = now.into_iter().take_while(|b| *b != 0).collect();
        assert_eq!(now, ALWAYS.as_bytes());
        drop(client);
    }

    #[test]
    fn a_name_the_kernel_lacks_is_refused_with_its_list() {
        let err = parse_congestion("no_such_cc").unwrap_err();
        assert!(err.contains("this kernel does not offer it"), "{err}");
        assert!(err.contains("tcp_no_such_cc"), "{err}");
        // The kernel's list, read from where the kernel keeps it.
        let available =
            std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control").unwrap();
        assert!(available.split_whitespace().any(|n| n == ALWAYS));
        assert!(err.contains(ALWAYS), "{err}");
    }

    #[test]
    fn a_name_the_daemon_may_not_choose_says_which_it_may() {
        // EPERM comes only to a daemon without CAP_NET_ADMIN: the message from the errno.
        let cc: Congestion = "bbr".parse().unwrap();
        let lists = KernelLists {
            available: "reno cubic bbr".into(),
            allowed: "reno cubic".into(),
        };
        let err = cc.refused(&io::Error::from_raw_os_error(libc::EPERM), &lists);
        assert_eq!(
            err,
            "tcp congestion control bbr: not allowed without CAP_NET_ADMIN (allowed: reno \
             cubic; the sysctl net.ipv4.tcp_allowed_congestion_control adds more)"
        );
        let err = cc.refused(&io::Error::from_raw_os_error(libc::ENOENT), &lists);
        assert!(err.contains("(available: reno cubic bbr;"), "{err}");
    }
}
