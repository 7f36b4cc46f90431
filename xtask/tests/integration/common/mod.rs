//! Helpers shared by the integration tests (each test file includes this module).

// Each test file uses only some of the helpers.
#![allow(dead_code)]

/// A tiny HTTP/1.1 server on 127.0.0.1: one thread per connection, `Connection: close`,
/// every request logged so that tests can assert what the client asked for.
pub mod server {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone)]
    pub struct Request {
        pub path: String,
        pub range: Option<String>,
    }

    pub enum Reply {
        /// The body, honouring `Range: bytes=N-` when `ranges` is set;
        /// `cut_after` closes the connection after that many body bytes.
        File {
            body: Arc<Vec<u8>>,
            ranges: bool,
            cut_after: Option<usize>,
        },
        Status(u16),
        Redirect(String),
        /// A status line, extra header lines and a body, sent as given.
        Raw {
            status: String,
            headers: String,
            body: Vec<u8>,
        },
    }

    impl Reply {
        pub fn file(body: &Arc<Vec<u8>>) -> Reply {
            Reply::File {
                body: body.clone(),
                ranges: true,
                cut_after: None,
            }
        }
    }

    /// Decides the reply from the request and how many requests for the same path came before.
    pub type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

    pub struct Server {
        pub base: String,
        log: Arc<Mutex<Vec<Request>>>,
    }

    impl Server {
        pub fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let log = Arc::new(Mutex::new(Vec::new()));
            let handler: Arc<Handler> = Arc::new(handler);
            let thread_log = log.clone();
            // The listener lives as long as the test process; each test has its own port.
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (handler, log) = (handler.clone(), thread_log.clone());
                    std::thread::spawn(move || serve(stream, &*handler, &log));
                }
            });
            Server { base, log }
        }

        pub fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        pub fn requests(&self) -> Vec<Request> {
            self.log.lock().unwrap().clone()
        }
    }

    fn serve(mut stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Request>>) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut first = String::new();
        if reader.read_line(&mut first).is_err() {
            return;
        }
        let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut range = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("range") {
                    range = Some(value.trim().to_string());
                }
            }
        }
        let request = Request { path, range };
        let earlier = {
            let mut log = log.lock().unwrap();
            let n = log.iter().filter(|r| r.path == request.path).count();
            log.push(request.clone());
            n
        };
        let _ = respond(&mut stream, &request, handler(&request, earlier));
        let _ = stream.shutdown(Shutdown::Both);
    }

    fn respond(stream: &mut TcpStream, request: &Request, reply: Reply) -> std::io::Result<()> {
        match reply {
            Reply::Status(code) => write!(
                stream,
                "HTTP/1.1 {code} Status\r\nContent-Length: 6\r\nConnection: close\r\n\r\nfailed"
            ),
            Reply::Raw {
                status,
                headers,
                body,
            } => {
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )?;
                stream.write_all(&body)
            }
            Reply::Redirect(location) => write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            ),
            Reply::File {
                body,
                ranges,
                cut_after,
            } => {
                let start = request
                    .range
                    .as_deref()
                    .filter(|_| ranges)
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|n| n.parse::<usize>().ok());
                let (status, extra, slice) = match start {
                    Some(s) if s < body.len() => (
                        "206 Partial Content",
                        format!(
                            "Content-Range: bytes {s}-{}/{}\r\n",
                            body.len() - 1,
                            body.len()
                        ),
                        &body[s..],
                    ),
                    Some(_) => (
                        "416 Range Not Satisfiable",
                        format!("Content-Range: bytes */{}\r\n", body.len()),
                        &body[..0],
                    ),
                    None => ("200 OK", String::new(), &body[..]),
                };
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\
                     Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    slice.len()
                )?;
                let sent = cut_after.map_or(slice.len(), |c| c.min(slice.len()));
                stream.write_all(&slice[..sent])?;
                stream.flush()
            }
        }
    }
}

/// A recipe whose "source release" is the rpython sdist served at `url`; its
/// target is one the sdist ships, so the fetched tree passes the recipe's check.
pub fn rpython_recipe_text(url: &str) -> String {
    format!(
        r#"[pypy]
version = "0.2.1"
python = "2.7"

[source]
url = "{url}"
sha256 = "{sha}"

[translate]
target = "rpython/translator/goal/targetnopstandalone.py"
opt = "2"
options = ["--shared"]
min_memory_gib = 1
min_disk_gib = 1
"#,
        sha = xtask::fixtures::RPYTHON_SHA256
    )
}

/// Regular files under `dir` other than lock files (none when `dir` is missing):
/// what a download or fetch left in a cache.
pub fn files_except_locks(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_none_or(|e| e != "lock"))
        .collect()
}

/// The RPython fixture tree is shared, and RPython writes its `_cache`
/// inside it, so the tests that translate take turns (they were separate
/// binaries, run one after another, before the tests became one binary).
pub fn rpython_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
