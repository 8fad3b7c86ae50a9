//! nginx as a reverse proxy in front of the leader: what users put in front
//! of a leader when they do not forward inside the service.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::systems::free_ports;

/// A running nginx that proxies `127.0.0.1:{port}` to one upstream.
#[derive(Debug)]
pub(crate) struct Nginx {
    child: Option<Child>,
    port: u16,
}

impl Nginx {
    /// Starts `program` with one worker process, proxying to
    /// `127.0.0.1:{upstream}` over pooled keep-alive connections.
    pub(crate) async fn start(program: &Path, dir: &Path, upstream: u16) -> Result<Nginx, String> {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_ports(1)?[0];
        let d = dir.display();
        // One worker: one process, like each of our nodes. Upstream
        // keep-alive so that nginx does not open a connection per request.
        let conf = format!(
            "worker_processes 1;\n\
             daemon off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/logs/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               upstream leader {{ server 127.0.0.1:{upstream}; keepalive 128; }}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{\n\
                   proxy_pass http://leader;\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n\
                   proxy_set_header Host $http_host;\n\
                 }}\n\
               }}\n\
             }}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).map_err(|e| format!("{}: {e}", path.display()))?;
        let child = Command::new(program)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let mut nginx = Nginx {
            child: Some(child),
            port,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(child) = nginx.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    nginx.child = None;
                    return Err(format!(
                        "nginx exited at start ({status}); see {d}/logs/error.log"
                    ));
                }
            }
            if Instant::now() > until {
                return Err("nginx did not listen within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(nginx)
    }

    /// `127.0.0.1:{port}`.
    pub(crate) fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its process ids: the master and, found through `/proc`, its worker.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let Some(master) = self.child.as_ref().map(Child::id) else {
            return Vec::new();
        };
        let mut pids = vec![master];
        if let Ok(children) =
            std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        {
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets the master stop its worker too.
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = child.wait();
        }
    }
}
