//! Benchmark (issue 3, item 7): `meshwork keys init` on the 50,000-client benchmark topology of
//! issue 2 (wall time, peak resident memory, certificates issued; target under 20 s on 2
//! cores), and, side by side in one run, issuing `--compare` client certificates (default 500)
//! the way easy-rsa does, with the openssl command line, against `meshwork keys init` on a
//! topology with one controller and as many clients, as a ratio.
//!
//! The openssl side runs two processes per certificate, like easy-rsa's `gen-req` and
//! `sign-req`: `openssl req -new -newkey ec ... -nodes` (key and request), then
//! `openssl x509 -req -CA ... -extfile ...` (clientAuth certificate, 825 days), one certificate
//! after another. Its CA is made beforehand and not timed; meshwork's time includes its CA, CRL
//! and tls-crypt key and the controller's certificate, which only favours openssl.
//!
//! Run in a release build, next to the `meshwork` binary:
//!   cargo build --release -p meshwork && target/release/meshwork-keys-bench [--clients N] [--compare N] [--keep DIR]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshwork::bench_topology::{CLIENTS, CONTROLLERS, MIN_CLIENTS, topology_with_clients};

/// Certificates issued the easy-rsa way, and by meshwork, for the ratio.
const COMPARE: u32 = 500;
/// Runs of the (short) meshwork side of the comparison; the median is reported.
const MESHWORK_RUNS: usize = 3;
/// Validity of the openssl client certificates, easy-rsa's default.
const OPENSSL_DAYS: &str = "825";
const OPENSSL_EXTENSIONS: &str = "basicConstraints=CA:FALSE\n\
    keyUsage=digitalSignature,keyEncipherment\n\
    extendedKeyUsage=clientAuth\n\
    subjectKeyIdentifier=hash\n\
    authorityKeyIdentifier=keyid,issuer\n";

struct Args {
    clients: u32,
    compare: u32,
    keep: Option<PathBuf>,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args { clients: CLIENTS, compare: COMPARE, keep: None };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--clients" => args.clients = value().parse().unwrap_or_else(|_| usage("--clients takes a number")),
            "--compare" => args.compare = value().parse().unwrap_or_else(|_| usage("--compare takes a number")),
            "--keep" => args.keep = Some(PathBuf::from(value())),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    if args.clients < MIN_CLIENTS {
        usage(&format!("--clients must be at least {MIN_CLIENTS}"));
    }
    if args.compare == 0 {
        usage("--compare must be at least 1");
    }
    args
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "usage: meshwork-keys-bench [--clients N (default {CLIENTS})] [--compare N (default {COMPARE})] [--keep DIR]"
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}

fn main() {
    let args = args();
    let exe_dir = std::env::current_exe().expect("own path").parent().expect("bin dir").to_path_buf();
    let meshwork = exe_dir.join("meshwork");
    assert!(meshwork.exists(), "build the meshwork binary first: cargo build --release -p meshwork");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let keep_work = args.keep.is_some();
    let work =
        args.keep.unwrap_or_else(|| std::env::temp_dir().join(format!("meshwork-keys-bench-{}", std::process::id())));
    if work.exists() {
        fs::remove_dir_all(&work).expect("clear the work dir");
    }
    fs::create_dir_all(&work).expect("work dir");

    // 1. keys init on the benchmark topology. The first child of this process, so the peak
    // RSS and CPU times of the children are its own.
    let file = work.join("bench.kdl");
    fs::write(&file, topology_with_clients(args.clients)).expect("write topology");
    let state = work.join("state-bench");
    println!(
        "keys init on the benchmark topology ({CONTROLLERS} controllers, {} clients; target under 20 s on 2 cores), {cores} CPU(s) available:",
        args.clients
    );
    let elapsed = keys_init(&meshwork, &file, &state);
    let usage = children_usage();
    let certs = count_certificates(&state);
    println!(
        "  {:.3} s wall ({:.3} s user, {:.3} s system CPU), peak RSS {:.1} MiB, {certs} certificates ({:.1} µs each)",
        elapsed.as_secs_f64(),
        usage.user.as_secs_f64(),
        usage.system.as_secs_f64(),
        usage.peak_rss_kib as f64 / 1024.0,
        elapsed.as_secs_f64() * 1e6 / certs.max(1) as f64
    );
    let _ = fs::remove_dir_all(&state);

    // 2. The easy-rsa way: openssl, two processes per certificate.
    let n = args.compare;
    println!("issuing {n} client certificates:");
    let openssl_time = openssl_issue(&work.join("openssl"), n);
    let openssl_certs = count_files(&work.join("openssl/issued"));
    assert_eq!(openssl_certs, n as usize, "openssl issued every certificate");
    println!(
        "  openssl (easy-rsa style, 2 processes per certificate): {:.3} s for {n} ({:.2} ms each)",
        openssl_time.as_secs_f64(),
        openssl_time.as_secs_f64() * 1e3 / f64::from(n)
    );

    // 3. meshwork: one controller and n clients, median of a few runs.
    let small = work.join("compare.kdl");
    fs::write(&small, comparison_topology(n)).expect("write comparison topology");
    let mut times = Vec::new();
    let mut meshwork_certs = 0;
    for run in 0..MESHWORK_RUNS {
        let state = work.join(format!("state-compare-{run}"));
        times.push(keys_init(&meshwork, &small, &state));
        meshwork_certs = count_certificates(&state);
        let _ = fs::remove_dir_all(&state);
    }
    times.sort();
    let meshwork_time = times[times.len() / 2];
    println!(
        "  meshwork keys init: {:.3} s for {meshwork_certs} (the clients and the controller, with CA, CRL and tls-crypt key; median of {MESHWORK_RUNS}, {:.3} ms each)",
        meshwork_time.as_secs_f64(),
        meshwork_time.as_secs_f64() * 1e3 / meshwork_certs.max(1) as f64
    );
    println!(
        "  ratio openssl / meshwork: {:.1}x",
        openssl_time.as_secs_f64() / meshwork_time.as_secs_f64().max(f64::MIN_POSITIVE)
    );

    if !keep_work {
        let _ = fs::remove_dir_all(&work);
    }
}

/// One controller and `clients` clients; the overlay has room for 65,000.
fn comparison_topology(clients: u32) -> String {
    format!(
        "topology \"compare\"\noverlay \"100.64.0.0/16\"\ncontroller \"east\" id=1 {{ address \"192.0.2.10\"; }}\nclients \"c\" count={clients}\n"
    )
}

/// Runs `meshwork keys init FILE --state-dir STATE` and returns its wall time.
fn keys_init(meshwork: &Path, file: &Path, state: &Path) -> Duration {
    let started = Instant::now();
    let out = Command::new(meshwork)
        .args(["keys", "init"])
        .arg(file)
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run meshwork");
    let elapsed = started.elapsed();
    assert!(out.status.success(), "meshwork keys init failed: {}", String::from_utf8_lossy(&out.stderr));
    elapsed
}

/// Certificates in the keyset: `issued/*.crt`.
fn count_certificates(state: &Path) -> usize {
    count_files(&meshwork::state::keyset_dir(state).join("issued"))
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file()))
        .count()
}

/// A CA (not timed), then `n` client certificates one after another, each with
/// `openssl req` + `openssl x509 -req`; returns the time of the `n` certificates.
fn openssl_issue(dir: &Path, n: u32) -> Duration {
    for sub in ["reqs", "private", "issued"] {
        fs::create_dir_all(dir.join(sub)).expect("openssl dirs");
    }
    fs::write(dir.join("client.ext"), OPENSSL_EXTENSIONS).expect("extensions file");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=bench CA",
            "-days",
            "3650",
        ],
    );
    let started = Instant::now();
    for i in 0..n {
        let (key, req, crt) = (format!("private/c{i}.key"), format!("reqs/c{i}.req"), format!("issued/c{i}.crt"));
        let subject = format!("/CN=c{i}");
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &req,
                "-subj",
                &subject,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &req,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                OPENSSL_DAYS,
                "-sha256",
                "-extfile",
                "client.ext",
                "-out",
                &crt,
            ],
        );
    }
    started.elapsed()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run openssl (is it installed?)");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// What the waited-for children used, together: CPU times and the largest peak RSS.
struct Usage {
    user: Duration,
    system: Duration,
    peak_rss_kib: i64,
}

fn children_usage() -> Usage {
    // SAFETY: getrusage only writes into the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage { user: time(usage.ru_utime), system: time(usage.ru_stime), peak_rss_kib: usage.ru_maxrss }
}
