//! A tokio host whose pool's metrics Prometheus scrapes: `cargo run --release --example
//! prometheus --features tokio,metrics -- [SECONDS] [ADDRESS]`.
//!
//! Serves `http://ADDRESS/metrics` (default `127.0.0.1:9000`) for SECONDS (default 30) while
//! tasks run commands through the pool, then prints one scrape of it and exits. Histograms use
//! explicit buckets (`sandpool::metrics::SECONDS_BUCKETS`): Prometheus histograms aggregate
//! across the nodes of a service, summaries do not.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use sandpool::SandboxPool;
use sandpool::sandbox::{Command, Policy};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map_or(Ok(30.0), |s| s.parse())?;
    let address: SocketAddr = args.next().map_or(Ok(([127, 0, 0, 1], 9000).into()), |s| s.parse())?;

    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &sandpool::metrics::SECONDS_BUCKETS)?
        .install()?;
    let pool = Arc::new(SandboxPool::builder(Policy::default()).name("example").max_size(8).min_idle(4).build()?);
    println!("serving http://{address}/metrics for {seconds} s");

    // Some traffic: clean leases, leases that leave a file (a reset each), the odd timeout.
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                while Instant::now() < until {
                    let Ok(mut lease) = pool.acquire_async().await else { continue };
                    let script = match i % 4 {
                        0 => "echo data > /tmp/out",
                        1 if rand_ish().is_multiple_of(50) => "sleep 5",
                        _ => "true",
                    };
                    let cmd = Command::new("/bin/sh").args(["-c", script]).timeout(Duration::from_millis(500)).clone();
                    let _ = lease.run_async(&cmd).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    pool.publish_metrics();

    let scrape = tokio::task::spawn_blocking(move || scrape(address)).await??;
    let ours: Vec<&str> = scrape.lines().filter(|l| l.starts_with("sandpool_")).collect();
    println!("{}", ours.join("\n"));
    println!("{:?}", pool.stats());
    Ok(())
}

/// One plain HTTP GET of the scrape endpoint.
fn scrape(address: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// A cheap varying number (no dependency): the clock's nanoseconds.
fn rand_ish() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}
