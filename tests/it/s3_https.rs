//! HTTPS with a private CA: Garage behind Debian's nginx as TLS terminator (S3) and `rclone serve restic --cert` (REST), certificates made by openssl; `--cacert`, `BACKUPD_CACERT` and a repository's `cacert`, the TLS failures a user meets (untrusted CA, wrong host name, https spoken to a plain-HTTP port, a bad PEM file), and restic 0.14 with `--cacert` reading the same repositories.

use crate::support::remote::{free_port, Garage};
use crate::support::{make_tree, manifest, show, Env, BACKUPCTL};
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run_ok(c: &mut Command) -> Output {
    let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(o.status.success(), "{c:?}:\n{}", show(&o));
    o
}

/// A test CA, a server certificate for 127.0.0.1 and one for another name, signed by it.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    wrong_cert: PathBuf,
    wrong_key: PathBuf,
}

fn make_certs(dir: &Path) -> Certs {
    fs::create_dir_all(dir).unwrap();
    let p = |n: &str| dir.join(n);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem"))
            .args(["-days", "2", "-subj", "/CN=backupd test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
    );
    for (name, san) in [("srv", "IP:127.0.0.1"), ("wrong", "DNS:wrong.example")] {
        run_ok(
            Command::new("openssl")
                .arg("req")
                .args(ec)
                .arg("-keyout")
                .arg(p(&format!("{name}.key")))
                .arg("-out")
                .arg(p(&format!("{name}.csr")))
                .args(["-subj", &format!("/CN={name}")]),
        );
        fs::write(
            p(&format!("{name}.ext")),
            format!(
                "subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        run_ok(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-set_serial", "7"])
                .arg("-in")
                .arg(p(&format!("{name}.csr")))
                .arg("-CA")
                .arg(p("ca.pem"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-extfile")
                .arg(p(&format!("{name}.ext")))
                .arg("-out")
                .arg(p(&format!("{name}.pem"))),
        );
    }
    Certs {
        ca: p("ca.pem"),
        cert: p("srv.pem"),
        key: p("srv.key"),
        wrong_cert: p("wrong.pem"),
        wrong_key: p("wrong.key"),
    }
}

fn wait_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited ({st}):\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port} in 30 s:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx terminating TLS on `good` (certificate for 127.0.0.1) and `wrong` (a certificate for
/// another name) in front of `upstream` (plain HTTP), as a self-hosted S3 store is deployed.
fn nginx(dir: &Path, certs: &Certs, good: u16, wrong: u16, upstream: u16) -> Server {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is needed by tests/it/s3_https.rs (apt-get install nginx); tests/run.sh installs it");
    fs::create_dir_all(dir.join("tmp")).unwrap();
    let d = dir.display();
    let server = |port: u16, cert: &Path, key: &Path| {
        format!(
            "  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{\n      proxy_pass http://127.0.0.1:{upstream};\n      proxy_set_header Host $http_host;\n    }}\n  }}\n",
            cert.display(),
            key.display()
        )
    };
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  client_max_body_size 0;\n  proxy_request_buffering off;\n  proxy_buffering off;\n  proxy_http_version 1.1;\n{}{}}}\n",
        server(good, &certs.cert, &certs.key),
        server(wrong, &certs.wrong_cert, &certs.wrong_key),
    );
    fs::write(dir.join("nginx.conf"), conf).unwrap();
    let log = dir.join("nginx.out");
    let mut child = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("start nginx");
    wait_port(good, "nginx", &mut child, &log);
    wait_port(wrong, "nginx", &mut child, &log);
    Server(child)
}

/// backupctl with S3 credentials (if `g`), a private cache, and no CA from the environment.
fn ctl(env: &Env, g: Option<&Garage>, args: &[&str]) -> Output {
    let mut c = crate::support::remote::backupctl(env);
    c.args(args);
    if let Some(g) = g {
        g.creds(&mut c);
    }
    c.output().expect("run backupctl")
}

fn ctl_ok(env: &Env, g: Option<&Garage>, args: &[&str]) -> String {
    let o = ctl(env, g, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "backupctl {args:?}:\n{}",
        show(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs backupctl, expects exit `code`, returns stderr.
fn ctl_fails(env: &Env, g: Option<&Garage>, args: &[&str], code: i32) -> String {
    let o = ctl(env, g, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "backupctl {args:?}:\n{}",
        show(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    eprintln!("backupctl {args:?} (exit {code}):\n{err}");
    err
}

fn restic_ok(env: &Env, g: Option<&Garage>, args: &[&str]) -> String {
    let mut c = Command::new("restic");
    c.arg("--password-file")
        .arg(&env.pw)
        .arg("--no-cache")
        .args(args)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("AWS_CA_BUNDLE");
    if let Some(g) = g {
        g.creds(&mut c);
    }
    let o = c
        .output()
        .expect("restic is needed (tests/run.sh installs it)");
    assert!(o.status.success(), "restic {args:?}:\n{}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

#[test]
fn s3_over_https_with_a_private_ca_and_the_tls_failures() {
    let env = Env::new();
    let certs = make_certs(&env.path("pki"));
    let g = Garage::start();
    let (good, wrong) = (free_port(), free_port());
    let _nginx = nginx(&env.path("nginx"), &certs, good, wrong, g.port);
    let ca = certs.ca.to_str().unwrap();
    let loc = format!("s3:https://127.0.0.1:{good}/{}/tls", g.bucket);
    let src = env.path("src");
    make_tree(&src, 5);

    // Without the CA: exit 15 at once (no retries), naming the endpoint and --cacert.
    let err = ctl_fails(&env, Some(&g), &["-r", &loc, "init"], 15);
    assert!(
        err.contains(&format!("127.0.0.1:{good}"))
            && err.contains("not signed by a trusted authority")
            && err.contains("--cacert"),
        "{err}"
    );
    assert!(
        !err.contains("attempts"),
        "a TLS failure is not retried: {err}"
    );

    // A bad or missing CA file: a configuration error (exit 1) naming the file.
    let junk = env.path("junk.pem");
    fs::write(&junk, "not a certificate\n").unwrap();
    let err = ctl_fails(
        &env,
        Some(&g),
        &["-r", &loc, "--cacert", junk.to_str().unwrap(), "init"],
        1,
    );
    assert!(
        err.contains("junk.pem") && err.contains("no certificate"),
        "{err}"
    );
    let missing = env.path("missing.pem");
    let err = ctl_fails(
        &env,
        Some(&g),
        &["-r", &loc, "--cacert", missing.to_str().unwrap(), "init"],
        1,
    );
    assert!(
        err.contains("missing.pem") && err.contains("cannot read"),
        "{err}"
    );

    // With the CA: init, backup, restore, check --read-data, all through nginx.
    ctl_ok(&env, Some(&g), &["-r", &loc, "--cacert", ca, "init"]);
    ctl_ok(
        &env,
        Some(&g),
        &["-r", &loc, "--cacert", ca, "backup", src.to_str().unwrap()],
    );
    let target = env.path("restore");
    ctl_ok(
        &env,
        Some(&g),
        &[
            "-r",
            &loc,
            "--cacert",
            ca,
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
    ctl_ok(
        &env,
        Some(&g),
        &["-r", &loc, "--cacert", ca, "check", "--read-data"],
    );
    // BACKUPD_CACERT works as --cacert does.
    let mut c = Command::new(BACKUPCTL);
    c.args(["-r", &loc, "--password-file"])
        .arg(&env.pw)
        .args(["--json", "snapshots"])
        .env("BACKUPD_CACERT", ca)
        .env("BACKUPD_CACHE_DIR", env.path("cache"));
    let o = g.creds(&mut c).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let snaps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");

    // A certificate from the right CA but for another name.
    let other = format!("s3:https://127.0.0.1:{wrong}/{}/tls", g.bucket);
    let err = ctl_fails(
        &env,
        Some(&g),
        &["-r", &other, "--cacert", ca, "snapshots"],
        15,
    );
    assert!(
        err.contains(&format!("127.0.0.1:{wrong}"))
            && err.contains("not valid for the name \"127.0.0.1\""),
        "{err}"
    );
    // https:// spoken to Garage's plain-HTTP port.
    let plain = format!("s3:https://127.0.0.1:{}/{}/tls", g.port, g.bucket);
    let err = ctl_fails(
        &env,
        Some(&g),
        &["-r", &plain, "--cacert", ca, "snapshots"],
        15,
    );
    assert!(
        err.contains(&format!("127.0.0.1:{}", g.port))
            && err.contains("did not answer in TLS")
            && err.contains("http://"),
        "{err}"
    );

    // restic 0.14 with --cacert reads the same bucket over https.
    let out = restic_ok(
        &env,
        Some(&g),
        &["-r", &loc, "--cacert", ca, "check", "--read-data"],
    );
    assert!(out.contains("no errors were found"), "{out}");
    let rt = env.path("restic-restore");
    restic_ok(
        &env,
        Some(&g),
        &[
            "-r",
            &loc,
            "--cacert",
            ca,
            "restore",
            "latest",
            "--target",
            rt.to_str().unwrap(),
        ],
    );
    assert_eq!(manifest(&restored(&rt, &src)), manifest(&src));
}

#[test]
fn rest_over_https_with_a_private_ca_from_flag_and_config() {
    let env = Env::new();
    let certs = make_certs(&env.path("pki"));
    let root = env.path("rest-root");
    fs::create_dir_all(&root).unwrap();
    let port = free_port();
    let log = env.path("rclone.log");
    let mut child = Command::new("rclone")
        .args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")])
        .arg("--cert")
        .arg(&certs.cert)
        .arg("--key")
        .arg(&certs.key)
        .arg(&root)
        // rclone 1.60 fails with LoadCustomCABundleError while AWS_CA_BUNDLE is set.
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("rclone is needed (tests/run.sh installs it)");
    wait_port(port, "rclone serve restic", &mut child, &log);
    let _rclone = Server(child);
    let ca = certs.ca.to_str().unwrap();
    let loc = format!("rest:https://127.0.0.1:{port}/repo/");
    let src = env.path("src");
    make_tree(&src, 9);

    let err = ctl_fails(&env, None, &["-r", &loc, "init"], 15);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("--cacert"),
        "{err}"
    );
    ctl_ok(&env, None, &["-r", &loc, "--cacert", ca, "init"]);

    // A daemon job with `cacert` in its repository's table (run in the foreground).
    let cfg = env.path("backupd.toml");
    fs::write(
        &cfg,
        format!(
            "[daemon]\nstate_dir = {state:?}\nlog_dir = {logs:?}\nsocket = {sock:?}\n\n[repositories.r]\npath = {loc:?}\npassword_file = {pw:?}\ncacert = {ca:?}\n\n[jobs.j]\nrepository = \"r\"\npaths = [{src:?}]\n",
            state = env.path("state"),
            logs = env.path("logs"),
            sock = env.path("sock"),
            pw = env.pw,
            src = src,
        ),
    )
    .unwrap();
    ctl_ok(
        &env,
        None,
        &["run-job", "j", "--config", cfg.to_str().unwrap()],
    );
    ctl_ok(
        &env,
        None,
        &["-r", &loc, "--cacert", ca, "check", "--read-data"],
    );
    let out = restic_ok(
        &env,
        None,
        &["-r", &loc, "--cacert", ca, "check", "--read-data"],
    );
    assert!(out.contains("no errors were found"), "{out}");
    let rt = env.path("restic-restore");
    restic_ok(
        &env,
        None,
        &[
            "-r",
            &loc,
            "--cacert",
            ca,
            "restore",
            "latest",
            "--target",
            rt.to_str().unwrap(),
        ],
    );
    assert_eq!(manifest(&restored(&rt, &src)), manifest(&src));
}
