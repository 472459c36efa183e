//! Streaming a layer once: read → verify blob digest → decompress → verify
//! diff ID → tar apply. Decoding runs on its own thread, feeding the applier
//! through a bounded channel, so decompression of the next layers overlaps
//! with the filesystem work of the current one.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use crate::compress;
use crate::digest::{limit_of, Expect, Verifier};
use crate::error::{Error, Result};
use crate::image::{Image, LayerInfo};
use crate::layer::{Applier, ApplyOptions, LayerStats};
use crate::progress::Progress;
use crate::safepath::Root;
use crate::source::Source;

const CHUNK: usize = 256 * 1024;
const CHUNKS_AHEAD: usize = 64;

/// Tunables for unpacking.
#[derive(Clone, Debug)]
pub struct UnpackLimits {
    /// Largest uncompressed size of one layer (decompression bomb guard).
    pub max_layer_size: u64,
    /// Layers decoded concurrently.
    pub jobs: usize,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_layer_size: 64 << 30,
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        }
    }
}

type Chunk = std::result::Result<Vec<u8>, String>;

/// The read end of a decoder thread.
pub struct ChannelReader {
    rx: Receiver<Chunk>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Ok(Err(msg)) => return Err(io::Error::new(io::ErrorKind::InvalidData, msg)),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Some writers (umoci 0.4's `insert`, for one) end a layer without the tar
/// end-of-archive blocks, even mid-padding. GNU tar and umoci accept that, so
/// at end of stream this pads to a block boundary and adds the two zero
/// blocks. Blob truncation is still caught: digests are checked below this.
struct TarEof<R> {
    inner: R,
    offset: u64,
    tail: Option<usize>,
}

impl<R: Read> Read for TarEof<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tail.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.offset += n as u64;
                return Ok(n);
            }
            let pad = (512 - (self.offset % 512) as usize) % 512;
            self.tail = Some(pad + 1024);
        }
        let left = self.tail.unwrap_or(0);
        let n = left.min(buf.len());
        buf[..n].fill(0);
        self.tail = Some(left - n);
        Ok(n)
    }
}

struct Counting<'p, R> {
    inner: R,
    progress: &'p Progress,
    index: usize,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(self.index, n as u64);
        Ok(n)
    }
}

fn layer_io(layer: &LayerInfo, e: io::Error) -> Error {
    match limit_of(&e) {
        Some(limit) => Error::SizeLimit {
            layer: layer.label(),
            limit,
        },
        None => Error::LayerIo {
            layer: layer.label(),
            source: e,
        },
    }
}

/// Decodes one layer into `tx`, verifying both digests; returns Ok early if the
/// reader went away (the applier's error is the one to report then).
fn decode(
    source: &dyn Source,
    layer: &LayerInfo,
    limits: &UnpackLimits,
    progress: &Progress,
    tx: SyncSender<Chunk>,
) -> Result<()> {
    let (raw, _) = source.open(&layer.path)?.ok_or_else(|| Error::Blob {
        digest: layer.label(),
        reason: format!("missing from {}", source.name()),
    })?;
    let raw = Counting {
        inner: raw,
        progress,
        index: layer.index,
    };
    let mut raw = Verifier::new(
        raw,
        Expect {
            name: layer.label(),
            digest: layer.blob_digest.clone(),
            size: layer.size,
            limit: None,
        },
    );
    let result = (|| {
        let dec = compress::decoder(&mut raw, layer.compression).map_err(|e| layer_io(layer, e))?;
        let mut plain = Verifier::new(
            dec,
            Expect {
                name: format!(
                    "{} (uncompressed, diff ID {})",
                    layer.label(),
                    layer.diff_id
                ),
                digest: Some(layer.diff_id.clone()),
                size: None,
                limit: Some(limits.max_layer_size),
            },
        );
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match plain.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(layer_io(layer, e)),
                }
            }
            if filled == 0 {
                break;
            }
            chunk.truncate(filled);
            if tx.send(Ok(chunk)).is_err() {
                return Ok(false);
            }
        }
        plain.finish()?;
        Ok(true)
    })();
    match result {
        Ok(false) => Ok(()),
        Ok(true) => {
            raw.finish()?;
            Ok(())
        }
        Err(e) => {
            let _ = tx.send(Err(e.to_string()));
            Err(e)
        }
    }
}

struct Pending<'scope> {
    reader: ChannelReader,
    handle: ScopedJoinHandle<'scope, Result<()>>,
}

fn spawn<'scope, 'env>(
    s: &'scope Scope<'scope, 'env>,
    source: &'env dyn Source,
    layer: &'env LayerInfo,
    limits: &'env UnpackLimits,
    progress: &'env Progress,
) -> Pending<'scope> {
    let (tx, rx) = sync_channel(CHUNKS_AHEAD);
    let handle = s.spawn(move || decode(source, layer, limits, progress, tx));
    Pending {
        reader: ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        },
        handle,
    }
}

/// Applies the decoded stream, drains what tar did not read (so the digests
/// cover the whole blob), and reports the decoder's error first: it is the
/// cause when a truncated or corrupt blob makes tar parsing fail.
fn finish(
    p: Pending<'_>,
    layer: &LayerInfo,
    root: &Root,
    opts: &ApplyOptions,
    progress: &Progress,
) -> Result<LayerStats> {
    progress.begin(layer.index);
    let Pending { mut reader, handle } = p;
    let applied = Applier::new(root, &layer.label(), opts).and_then(|a| {
        a.apply(TarEof {
            inner: &mut reader,
            offset: 0,
            tail: None,
        })
    });
    if applied.is_ok() {
        let _ = io::copy(&mut reader, &mut io::sink());
    }
    drop(reader);
    let decoded = handle.join().unwrap_or_else(|_| {
        Err(Error::LayerIo {
            layer: layer.label(),
            source: io::Error::other("decoder thread panicked"),
        })
    });
    decoded?;
    applied
}

/// Applies every layer of `image`, in order, into the directory `rootfs`.
pub fn unpack_flat(
    image: &Image,
    rootfs: &Path,
    opts: &ApplyOptions,
    limits: &UnpackLimits,
    progress: &Progress,
) -> Result<Vec<LayerStats>> {
    let root = Root::open(rootfs)?;
    let source = image.source.as_ref();
    let ahead = limits.jobs.max(1);
    std::thread::scope(|s| {
        let mut pending: VecDeque<Pending<'_>> = VecDeque::new();
        let mut next = 0;
        let mut stats = Vec::new();
        for layer in &image.layers {
            while next < image.layers.len() && pending.len() < ahead {
                pending.push_back(spawn(s, source, &image.layers[next], limits, progress));
                next += 1;
            }
            let Some(p) = pending.pop_front() else { break };
            stats.push(finish(p, layer, &root, opts, progress)?);
            progress.done(layer.index, false);
        }
        Ok(stats)
    })
}

/// Extracts single layers into their own directories, `jobs` at a time.
pub fn extract_layers(
    image: &Image,
    work: &[(usize, &Path)],
    opts: &ApplyOptions,
    limits: &UnpackLimits,
    progress: &Progress,
) -> Vec<Result<LayerStats>> {
    let source = image.source.as_ref();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<LayerStats>>>> =
        work.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..limits.jobs.max(1).min(work.len()) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((i, dir)) = work.get(k) else { break };
                let layer = &image.layers[*i];
                let r = std::thread::scope(|s2| {
                    let root = Root::open(dir)?;
                    let p = spawn(s2, source, layer, limits, progress);
                    finish(p, layer, &root, opts, progress)
                });
                if r.is_ok() {
                    progress.done(*i, false);
                }
                if let Ok(mut slot) = results[k].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner().ok().flatten().unwrap_or_else(|| {
                Err(Error::LayerIo {
                    layer: "?".into(),
                    source: io::Error::other("extraction worker panicked"),
                })
            })
        })
        .collect()
}
