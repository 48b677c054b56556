//! `demo`: the whole path on loopback with nothing to set up. A server starts on free
//! ports, a publisher sends the bundled test stream over RTMFP in real time, a player
//! plays it back over RTMFP, and the demo reports frames, bitrate and latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use anyhow::{bail, Context, Result};

use super::play::play_stream;
use super::publish::{publish_tags, read_tags, Audience};
use super::serve::{logging_hook, start, EngineFlags};
use super::url::RtmfpUrl;
use crate::media::MediaKind;
use crate::server::config::ServerConfig;

const STREAM: &str = "demo";

pub fn demo() -> Result<()> {
    let mut cfg = ServerConfig::embedded_default();
    cfg.rtmfp_listen = "127.0.0.1:0".parse()?;
    cfg.rtmp_listen = Some("127.0.0.1:0".parse()?);
    let stop = Arc::new(AtomicBool::new(false));
    let engine = start(
        cfg,
        &EngineFlags::default(),
        logging_hook(Some(stop.clone())),
    )?;
    let (rtmfp, rtmp) = (
        engine.rtmfp_addr,
        engine.rtmp_addr.context("RTMP listener")?,
    );
    println!(
        "server: RTMFP on udp://{rtmfp}, RTMP on tcp://{rtmp}, app live, {} shard(s)",
        engine.shards()
    );
    let url = RtmfpUrl::parse(&format!("rtmfp://{rtmfp}/live/{STREAM}"))?;
    let sent_at: Arc<Mutex<HashMap<(MediaKind, u32), StdInstant>>> = Arc::default();
    let publisher = {
        let (url, sent_at) = (url.clone(), sent_at.clone());
        std::thread::spawn(move || -> Result<_> {
            let tags = read_tags(None)?;
            publish_tags(
                &url,
                None,
                tags,
                true,
                Audience::Server,
                Duration::from_secs(10),
                |m| {
                    if let Ok(mut map) = sent_at.lock() {
                        map.insert((m.kind, m.timestamp), StdInstant::now());
                    }
                },
            )
        })
    };
    // The player joins once the publisher is live, as a viewer would.
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "player: playing {} over RTMFP",
        url.tc_url.clone() + "/" + STREAM
    );
    let started = StdInstant::now();
    let mut latencies = Vec::new();
    let stats = play_stream(&url, None, None, None, Duration::from_secs(10), |m, _| {
        if let Ok(map) = sent_at.lock() {
            // Catch-up frames (sent before the player joined) say nothing of latency.
            if let Some(t) = map.get(&(m.kind, m.timestamp)).filter(|t| **t > started) {
                latencies.push(t.elapsed());
            }
        }
        Ok(())
    });
    let elapsed = started.elapsed().as_secs_f64();
    let published = publisher
        .join()
        .map_err(|_| anyhow::anyhow!("publisher panicked"))?;
    stop.store(true, Ordering::Relaxed);
    engine.stop();
    let _ = engine.join();
    let published = published.context("publisher")?;
    let stats = stats.context("player")?;
    println!(
        "publisher: sent {} video and {} audio frames, {:.1} s of media",
        published.video_frames,
        published.audio_frames,
        f64::from(published.media_duration_ms) / 1000.0
    );
    println!(
        "player: received {} video and {} audio frames, {} bytes, {:.0} kbit/s{}",
        stats.video_frames,
        stats.audio_frames,
        stats.bytes,
        stats.bytes as f64 * 8.0 / 1000.0 / elapsed.max(0.001),
        if stats.ended {
            ", stream ended by the publisher"
        } else {
            ""
        }
    );
    if !latencies.is_empty() {
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "latency publisher -> server -> player: median {:.1} ms, 99th percentile {:.1} ms, max {:.1} ms",
            ms(latencies[latencies.len() / 2]),
            ms(latencies[latencies.len() * 99 / 100]),
            ms(latencies[latencies.len() - 1])
        );
    }
    if stats.video_frames == 0 || stats.audio_frames == 0 {
        bail!("the player received no media");
    }
    println!("try it with real tools: rtmfp-edge serve, then");
    println!("  ffmpeg -re -i in.flv -c copy -f flv rtmp://127.0.0.1/live/demo");
    println!("  rtmfp-edge play rtmfp://127.0.0.1/live/demo | ffplay -");
    Ok(())
}
