//! Redis in effect: `CONFIG GET` and `CONFIG SET` over its own protocol (RESP), with a short
//! time limit on every read and write.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(3);
/// The largest reply read (a CONFIG GET of a few keys is far smaller).
const MAX_REPLY: usize = 64 * 1024;

/// One connection, authenticated when the server has a password.
pub struct Conn {
    reader: BufReader<TcpStream>,
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
    /// Connects to `addrs` in order (the first that answers), and authenticates.
    pub fn open(addrs: &[SocketAddr], password: Option<&str>) -> Result<Conn, String> {
        let mut last = String::from("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(addr, LIMIT) {
                Ok(s) => {
                    s.set_read_timeout(Some(LIMIT)).map_err(|e| e.to_string())?;
                    s.set_write_timeout(Some(LIMIT)).map_err(|e| e.to_string())?;
                    let mut c = Conn { reader: BufReader::new(s) };
                    if let Some(pw) = password {
                        c.call(&["AUTH", pw]).map_err(|e| format!("AUTH: {e}"))?;
                    }
                    return Ok(c);
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(format!("Redis does not answer ({last})"))
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

    /// `CONFIG SET key value`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match self.call(&["CONFIG", "SET", key, value])? {
            Reply::Ok(_) => Ok(()),
            other => Err(format!("CONFIG SET {key}: an unexpected reply {other:?}")),
        }
    }

    fn call(&mut self, args: &[&str]) -> Result<Reply, String> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&req).map_err(|e| e.to_string())?;
        match self.reply(0)? {
            Reply::Error(e) => Err(e),
            r => Ok(r),
        }
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = Vec::new();
        (&mut self.reader).take(MAX_REPLY as u64).read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
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
                n if n as usize > MAX_REPLY => return Err("a reply too large".into()),
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
        let mut c = Conn::open(&[addr], Some("secret")).unwrap();
        assert_eq!(c.get("bind").unwrap().as_deref(), Some("127.0.0.1 -::1"));
        c.set("bind", "127.0.0.1").unwrap();
        assert_eq!(c.get("nosuch").unwrap(), None);
    }

    #[test]
    fn errors_and_garbage_are_errors() {
        let addr = server(&["-ERR Unsupported CONFIG parameter: x\r\n", "?what\r\n"]);
        let mut c = Conn::open(&[addr], None).unwrap();
        assert!(c.set("x", "1").unwrap_err().contains("Unsupported"));
        assert!(c.get("bind").is_err());
    }
}
