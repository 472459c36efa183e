//! Layer decompression: gzip (multi-member), zstd (multi-frame, skippable frames)
//! or plain, chosen by media type or by sniffing the first bytes.

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::MultiGzDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use crate::media::Compression;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Recognises a compression format from the leading bytes.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps `raw` in the decoder for `compression`.
pub fn decoder<'a, R: Read + Send + 'a>(
    raw: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, raw);
    let compression = match compression {
        Compression::Sniff => sniff(buffered.fill_buf()?),
        c => c,
    };
    Ok(match compression {
        Compression::None | Compression::Sniff => Box::new(buffered),
        Compression::Gzip => Box::new(MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(ZstdReader::new(buffered)),
    })
}

/// A zstd stream reader that continues across concatenated frames and skips
/// skippable frames, which ruzstd's single-frame `StreamingDecoder` does not.
pub struct ZstdReader<R: BufRead> {
    src: R,
    dec: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdReader<R> {
    /// Decodes the zstd stream in `src`.
    pub fn new(src: R) -> Self {
        ZstdReader {
            src,
            dec: FrameDecoder::new(),
            in_frame: false,
        }
    }

    /// Starts the next frame; false at a clean end of stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.src.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.dec.reset(&mut self.src) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.src).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd: truncated skippable frame",
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("zstd: {e}"),
                    ))
                }
            }
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            while self.dec.can_collect() == 0 && !self.dec.is_finished() {
                self.dec
                    .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBytes(1 << 20))
                    .map_err(|e| {
                        let kind = if e.to_string().contains("UnexpectedEof")
                            || e.to_string().contains("failed to fill")
                        {
                            io::ErrorKind::UnexpectedEof
                        } else {
                            io::ErrorKind::InvalidData
                        };
                        io::Error::new(kind, format!("zstd: {e}"))
                    })?;
            }
            let n = self.dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.dec.is_finished() && self.dec.can_collect() == 0 {
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn all(r: &mut dyn Read) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn gzip_multi_member_and_sniff() {
        let mut data = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            data.extend(e.finish().unwrap());
        }
        assert_eq!(sniff(&data), Compression::Gzip);
        assert_eq!(
            all(&mut decoder(&data[..], Compression::Sniff).unwrap()).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn zstd_multi_frame_with_skippable() {
        let a = ruzstd::encoding::compress_to_vec(
            &b"first "[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let b = ruzstd::encoding::compress_to_vec(
            &vec![b'x'; 300_000][..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut data = a.clone();
        data.extend([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
        data.extend(&b);
        assert_eq!(sniff(&data), Compression::Zstd);
        let out = all(&mut decoder(&data[..], Compression::Zstd).unwrap()).unwrap();
        assert_eq!(&out[..6], b"first ");
        assert_eq!(out.len(), 6 + 300_000);
        let truncated = &data[..data.len() - 10];
        assert!(all(&mut decoder(truncated, Compression::Zstd).unwrap()).is_err());
    }

    #[test]
    fn plain_passes_through() {
        assert_eq!(
            all(&mut decoder(&b"tar bytes"[..], Compression::Sniff).unwrap()).unwrap(),
            b"tar bytes"
        );
    }
}
