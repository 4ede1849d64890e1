//! Redis in effect: `CONFIG GET` and `CONFIG SET` over its own protocol (RESP). One
//! connection has one deadline for everything it does, and reads at most [`MAX_READ`] bytes in
//! all, whatever answers on the port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Everything one connection does (within the host connector's limit of one call, 10 s).
const LIMIT: Duration = Duration::from_secs(3);
/// The most bytes one connection reads (a CONFIG GET of a few keys is far smaller).
const MAX_READ: u64 = 64 * 1024;

/// One connection, authenticated when the server has a password.
pub struct Conn {
    reader: BufReader<std::io::Take<Deadline>>,
}

/// A stream whose every read and write waits at most until one deadline: a server that answers
/// a byte at a time cannot stretch a call past it.
struct Deadline {
    stream: TcpStream,
    at: Instant,
}

impl Deadline {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("Redis did not answer within {} s", LIMIT.as_secs()),
            ));
        }
        Ok(left)
    }
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// A RESP reply.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ok(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl Conn {
    /// Connects to `addr` and authenticates.
    pub fn open(addr: SocketAddr, password: Option<&str>) -> Result<Conn, String> {
        let at = Instant::now() + LIMIT;
        let stream =
            TcpStream::connect_timeout(&addr, LIMIT).map_err(|e| format!("Redis does not answer at {addr}: {e}"))?;
        let mut c = Conn { reader: BufReader::new(Deadline { stream, at }.take(MAX_READ)) };
        if let Some(pw) = password {
            match c.call(&["AUTH", pw]).map_err(|e| format!("AUTH: {e}"))? {
                Reply::Ok(_) => {}
                other => return Err(format!("AUTH: an unexpected reply {other:?}")),
            }
        }
        Ok(c)
    }

    /// `CONFIG GET key`: its value, or None if this Redis has no such parameter.
    pub fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.call(&["CONFIG", "GET", key])? {
            Reply::Array(items) => match items.as_slice() {
                [_, Reply::Bulk(Some(v))] => Ok(Some(v.clone())),
                [] => Ok(None),
                _ => Err(format!("CONFIG GET {key}: an unexpected reply")),
            },
            other => Err(format!("CONFIG GET {key}: an unexpected reply {other:?}")),
        }
    }

    /// `CONFIG SET k1 v1 k2 v2 …`: all of them or none (Redis 7 applies several at once; an
    /// older Redis takes one pair per call, and a later pair's failure is then the caller's to
    /// undo).
    pub fn set(&mut self, pairs: &[(&str, &str)]) -> Result<(), String> {
        let mut args = vec!["CONFIG", "SET"];
        for (k, v) in pairs {
            args.extend([*k, *v]);
        }
        match self.call(&args) {
            Ok(Reply::Ok(_)) => Ok(()),
            Err(e) if pairs.len() > 1 && e.contains("wrong number of arguments") => {
                pairs.iter().try_for_each(|pair| self.set(std::slice::from_ref(pair)))
            }
            Ok(other) => Err(format!("CONFIG SET: an unexpected reply {other:?}")),
            Err(e) => Err(format!("CONFIG SET: {e}")),
        }
    }

    fn call(&mut self, args: &[&str]) -> Result<Reply, String> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().get_mut().write_all(&req).map_err(|e| e.to_string())?;
        match self.reply(0)? {
            Reply::Error(e) => Err(e),
            r => Ok(r),
        }
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
        if !line.ends_with(b"\r\n") {
            return Err("the connection ended in the middle of a reply".into());
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn reply(&mut self, depth: usize) -> Result<Reply, String> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let int = |s: &str| s.parse::<i64>().map_err(|_| format!("a malformed reply {line:?}"));
        Ok(match kind {
            "+" => Reply::Ok(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(int(rest)?),
            "$" => match int(rest)? {
                n if n < 0 => Reply::Bulk(None),
                n if n as u64 > MAX_READ => return Err("a reply too large".into()),
                n => {
                    let mut data = vec![0; n as usize + 2];
                    self.reader.read_exact(&mut data).map_err(|e| e.to_string())?;
                    data.truncate(n as usize);
                    Reply::Bulk(Some(String::from_utf8_lossy(&data).into_owned()))
                }
            },
            "*" if depth < 4 => {
                let n = int(rest)?;
                if n > 1024 {
                    return Err("a reply too large".into());
                }
                Reply::Array((0..n.max(0)).map(|_| self.reply(depth + 1)).collect::<Result<_, _>>()?)
            }
            _ => return Err(format!("a malformed reply {line:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server that answers each request with the next canned reply.
    fn server(replies: &'static [&'static str]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            for reply in replies {
                // Read one request: `*N` then N pairs of lines.
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let n: usize = line.trim()[1..].parse().unwrap();
                for _ in 0..2 * n {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                }
                w.write_all(reply.as_bytes()).unwrap();
            }
        });
        addr
    }

    #[test]
    fn config_get_and_set_speak_resp() {
        let addr = server(&["+OK\r\n", "*2\r\n$4\r\nbind\r\n$14\r\n127.0.0.1 -::1\r\n", "+OK\r\n", "*0\r\n"]);
        let mut c = Conn::open(addr, Some("secret")).unwrap();
        assert_eq!(c.get("bind").unwrap().as_deref(), Some("127.0.0.1 -::1"));
        c.set(&[("bind", "127.0.0.1"), ("port", "6379")]).unwrap();
        assert_eq!(c.get("nosuch").unwrap(), None);
    }

    #[test]
    fn errors_and_garbage_are_errors() {
        let addr = server(&["-ERR Unsupported CONFIG parameter: x\r\n", "?what\r\n"]);
        let mut c = Conn::open(addr, None).unwrap();
        assert!(c.set(&[("x", "1")]).unwrap_err().contains("Unsupported"));
        assert!(c.get("bind").is_err());
    }

    #[test]
    fn a_server_that_is_not_redis_cannot_hold_or_flood_the_client() {
        // AUTH answered with anything but +OK is a failure.
        let addr = server(&[":1\r\n"]);
        assert!(Conn::open(addr, Some("pw")).is_err());
        // An endless reply stops at the read limit.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.write_all(b"+");
            let chunk = vec![b'a'; 8192];
            while s.write_all(&chunk).is_ok() {}
        });
        let mut c = Conn::open(addr, None).unwrap();
        assert!(c.get("bind").is_err());
        // One that sends a byte at a time, slowly, never ending its line, stops at the deadline
        // (without one, this test would never end).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            while s.write_all(b"a").is_ok() {
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let mut c = Conn::open(addr, None).unwrap();
        assert!(c.get("bind").is_err());
    }
}
