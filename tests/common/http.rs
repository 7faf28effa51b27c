//! A loopback HTTP/1.1 mirror for tests: serves directories, counts
//! requests per path, honours Range, If-Range, ETag and If-Modified-Since (or sends no
//! validators, like some mirrors), and injects
//! faults (status codes, a body cut short, a stall, wrong bytes).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and no body.
    Status(u16),
    /// Send the headers for the full body, then this many bytes, then close.
    CutAfter(usize),
    /// Send the headers and half the body, then nothing for this long.
    Stall(Duration),
    /// Serve the body with its first byte changed.
    Corrupt,
    /// Send the body at this many bytes per second (in 10 ms slices).
    Throttle(usize),
    /// Once: send this many bytes and close, then replace the file with the
    /// given one if any (a new version published between a cut and its
    /// resume).
    CutOnce(usize, Option<PathBuf>),
}

#[derive(Default)]
struct State {
    /// URL path prefix → directory.
    mounts: Vec<(String, PathBuf)>,
    /// Fault for any path containing the key ("" = every path).
    faults: Vec<(String, Fault)>,
    counts: HashMap<String, usize>,
    conditional_hits: usize,
    log: Vec<String>,
    /// Send no ETag or Last-Modified and ignore conditional requests, as
    /// some mirrors do.
    no_validators: bool,
    /// What every request must present, else 401.
    required: Option<Required>,
    /// URL path prefix → another base URL: answered with a 302 there.
    redirects: Vec<(String, String)>,
    /// Each request's path and its Authorization header, as received.
    authorizations: Vec<(String, Option<String>)>,
}

/// Credentials a server requires.
#[derive(Debug, Clone)]
pub enum Required {
    /// This exact Authorization header (`Basic …`, `Bearer …`).
    Header(String),
    /// This text in the query (a URL token).
    Query(String),
}

pub struct Server {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve_connection(conn, st);
                });
            }
        });
        Server { port, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Serve `dir` under URL path `prefix` (e.g. "/debian").
    pub fn mount(&self, prefix: &str, dir: &Path) {
        let mut s = self.state.lock().unwrap();
        s.mounts.push((prefix.trim_end_matches('/').to_string(), dir.to_path_buf()));
        s.mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
    }

    pub fn set_fault(&self, path_part: &str, fault: Fault) {
        self.state.lock().unwrap().faults.push((path_part.to_string(), fault));
    }

    pub fn set_validators(&self, on: bool) {
        self.state.lock().unwrap().no_validators = !on;
    }

    /// Require credentials of every request (401 otherwise).
    pub fn require(&self, required: Required) {
        self.state.lock().unwrap().required = Some(required);
    }

    /// Answer requests under `prefix` with a 302 to `base` + the rest of the path.
    pub fn redirect(&self, prefix: &str, base: &str) {
        self.state.lock().unwrap().redirects.push((prefix.to_string(), base.to_string()));
    }

    /// Every request's path with the Authorization header it carried.
    pub fn authorizations(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().authorizations.clone()
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// Requests seen for paths containing `part`.
    pub fn count(&self, part: &str) -> usize {
        self.state.lock().unwrap().counts.iter().filter(|(p, _)| p.contains(part)).map(|(_, n)| n).sum()
    }

    pub fn total_requests(&self) -> usize {
        self.state.lock().unwrap().counts.values().sum()
    }

    /// Requests answered 304 Not Modified.
    pub fn conditional_hits(&self) -> usize {
        self.state.lock().unwrap().conditional_hits
    }

    pub fn reset_counts(&self) {
        let mut s = self.state.lock().unwrap();
        s.counts.clear();
        s.conditional_hits = 0;
        s.log.clear();
    }

    /// The requests served, in order.
    pub fn log(&self) -> Vec<String> {
        self.exchanges().into_iter().filter(|l| !l.starts_with("  -> ")).collect()
    }

    /// Each request followed by its answer's status (`  -> 206 Partial Content`).
    pub fn exchanges(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn http_date(t: std::time::SystemTime) -> String {
    // RFC 7231 IMF-fixdate, computed without a date crate.
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let days = secs / 86400;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // civil_from_days (Howard Hinnant)
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(mo - 1) as usize];
    format!("{weekday}, {d:02} {month} {y} {h:02}:{m:02}:{s:02} GMT")
}

fn serve_connection(conn: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/");
        let path = target.split('?').next().unwrap_or("/").to_string();
        // A query selects the file `<name>?<query>` where one exists (a
        // paged listing's pages), else it is ignored.
        let query = target.split_once('?').map(|(_, q)| q.to_string());
        let keep_going = respond(&mut out, &method, &path, query.as_deref(), &headers, &state)?;
        if !keep_going {
            return Ok(());
        }
    }
}

fn respond(
    out: &mut TcpStream,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HashMap<String, String>,
    state: &Arc<Mutex<State>>,
) -> std::io::Result<bool> {
    let (file, fault, no_validators) = {
        let mut s = state.lock().unwrap();
        let authorization = headers.get("authorization").cloned();
        s.authorizations.push((path.to_string(), authorization.clone()));
        let allowed = match &s.required {
            None => true,
            Some(Required::Header(h)) => authorization.as_deref() == Some(h.as_str()),
            Some(Required::Query(q)) => query.is_some_and(|have| have.split('&').any(|part| part == q)),
        };
        if !allowed {
            s.log.push(format!("{method} {path} -> 401"));
            drop(s);
            write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n"
            )?;
            return Ok(true);
        }
        let redirect = s
            .redirects
            .iter()
            .find_map(|(prefix, base)| path.strip_prefix(prefix.as_str()).map(|rest| format!("{base}{rest}")));
        if let Some(location) = redirect {
            s.log.push(format!("{method} {path} -> 302 {location}"));
            drop(s);
            write!(out, "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")?;
            return Ok(true);
        }
        *s.counts.entry(path.to_string()).or_default() += 1;
        s.log.push(format!("{method} {path} range={:?} if-range={:?}", headers.get("range"), headers.get("if-range")));
        let fault = s.faults.iter().find(|(k, _)| path.contains(k.as_str())).map(|(_, f)| f.clone());
        let file = s.mounts.iter().find_map(|(prefix, dir)| {
            let rest = path.strip_prefix(prefix.as_str())?;
            if !(rest.is_empty() || rest.starts_with('/')) || rest.contains("..") {
                return None;
            }
            let file = dir.join(rest.trim_start_matches('/'));
            let paged = query.map(|q| PathBuf::from(format!("{}?{q}", file.display())));
            // A directory answers with its index.html, as web servers do.
            let file = if file.is_dir() { file.join("index.html") } else { file };
            Some(paged.filter(|p| p.is_file()).unwrap_or(file))
        });
        (file, fault, s.no_validators)
    };
    if let Some(Fault::Status(code)) = fault {
        write!(out, "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(true);
    }
    let Some(file) = file.filter(|f| f.is_file()) else {
        write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(true);
    };
    let meta = std::fs::metadata(&file)?;
    let mtime = meta.modified()?;
    let etag = format!("\"{:x}-{:x}\"", meta.len(), mtime.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let last_modified = http_date(mtime);
    let not_modified = !no_validators && headers.get("if-none-match").is_some_and(|v| *v == etag)
        || (headers.get("if-none-match").is_none()
            && headers.get("if-modified-since").is_some_and(|v| *v == last_modified));
    if not_modified {
        state.lock().unwrap().conditional_hits += 1;
        write!(
            out,
            "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nLast-Modified: {last_modified}\r\nContent-Length: 0\r\n\r\n"
        )?;
        return Ok(true);
    }
    let mut body = std::fs::read(&file)?;
    if let Some(Fault::Corrupt) = fault {
        if let Some(b) = body.first_mut() {
            *b ^= 0xff;
        }
    }
    let total = body.len();
    let mut status = "200 OK".to_string();
    let mut extra = String::new();
    // If-Range: the range only if the validator is the file's current one.
    let if_range_holds = headers.get("if-range").is_none_or(|v| !no_validators && (*v == etag || *v == last_modified));
    let range = headers.get("range").filter(|_| if_range_holds);
    if let Some(range) = range.and_then(|r| r.strip_prefix("bytes=")) {
        let (start, end) = range.split_once('-').unwrap_or((range, ""));
        let start: usize = start.parse().unwrap_or(0);
        let end: usize = end.parse::<usize>().map_or(total, |e| (e + 1).min(total));
        if start >= total {
            write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\n\r\n"
            )?;
            return Ok(true);
        }
        body = body[start..end].to_vec();
        status = "206 Partial Content".to_string();
        extra = format!("Content-Range: bytes {start}-{}/{total}\r\n", end - 1);
    }
    if !no_validators {
        extra.push_str(&format!("ETag: {etag}\r\nLast-Modified: {last_modified}\r\n"));
    }
    write!(out, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n{extra}\r\n", body.len())?;
    state.lock().unwrap().log.push(format!("  -> {status}"));
    if method == "HEAD" {
        return Ok(true);
    }
    match fault {
        Some(Fault::CutOnce(n, replacement)) => {
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            let _ = out.shutdown(std::net::Shutdown::Both);
            state.lock().unwrap().faults.retain(|(_, f)| !matches!(f, Fault::CutOnce(..)));
            if let Some(replacement) = replacement {
                // A new version, with a new mtime (and so a new ETag).
                std::thread::sleep(Duration::from_millis(5));
                std::fs::copy(&replacement, &file)?;
            }
            Ok(false)
        }
        Some(Fault::CutAfter(n)) => {
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            let _ = out.shutdown(std::net::Shutdown::Both);
            Ok(false)
        }
        Some(Fault::Throttle(rate)) => {
            let slice = (rate / 100).max(1);
            for chunk in body.chunks(slice) {
                out.write_all(chunk)?;
                out.flush()?;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(true)
        }
        Some(Fault::Stall(d)) => {
            out.write_all(&body[..body.len() / 2])?;
            out.flush()?;
            std::thread::sleep(d);
            let _ = out.shutdown(std::net::Shutdown::Both);
            Ok(false)
        }
        _ => {
            out.write_all(&body)?;
            Ok(true)
        }
    }
}

/// Serve `file` on `server` where `url` points (a copy under `root`), and
/// the `--mirror` rule for it.
pub fn serve_as(server: &Server, root: &std::path::Path, url: &str, file: &std::path::Path) -> [String; 2] {
    let parsed = url::Url::parse(url).unwrap();
    let (dir, name) = parsed.path().rsplit_once('/').unwrap();
    let local = root.join(parsed.host_str().unwrap()).join(dir.trim_start_matches('/'));
    std::fs::create_dir_all(&local).unwrap();
    std::fs::copy(file, local.join(name)).unwrap();
    let prefix = format!("/{}{dir}", parsed.host_str().unwrap());
    server.mount(&prefix, &local);
    let canonical = format!("{}://{}{dir}", parsed.scheme(), parsed.host_str().unwrap());
    ["--mirror".to_string(), format!("{canonical}={}", server.url(&prefix))]
}
