//! Reading request lines as bytes, with a cap on their length.

use std::io::{self, BufRead, BufReader, ErrorKind, Read};

/// What [`LineReader::read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// A line (without its `\n`) is in the buffer. The last line of the input
    /// counts even without a final newline.
    Line,
    /// A line longer than the cap was read and thrown away, up to and
    /// including its newline; it was never held in memory whole.
    TooLong,
    /// The input is at its end.
    Eof,
}

/// Newline-delimited input with a length cap per line.
pub struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
}

impl<R: Read> LineReader<R> {
    /// Reads from `input` through a buffer of `capacity` bytes; lines longer
    /// than `max` bytes are discarded.
    pub fn new(input: R, capacity: usize, max: usize) -> Self {
        LineReader {
            inner: BufReader::with_capacity(capacity, input),
            max,
        }
    }

    /// Whether a whole line is already in the buffer, so that reading it will
    /// not wait for the peer.
    pub fn has_complete_line(&self) -> bool {
        self.inner.buffer().contains(&b'\n')
    }

    /// Reads the next line into `buf` (cleared first).
    pub fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<LineRead> {
        buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(match (any, too_long) {
                    (false, _) => LineRead::Eof,
                    (true, false) => LineRead::Line,
                    (true, true) => LineRead::TooLong,
                });
            }
            any = true;
            let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long {
                if buf.len() + chunk.len() > self.max {
                    too_long = true;
                    buf.clear();
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            self.inner.consume(used);
            if done {
                return Ok(if too_long {
                    LineRead::TooLong
                } else {
                    LineRead::Line
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields its input a few bytes per read, as a pipe may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn all(input: &[u8], step: usize, max: usize) -> Vec<(LineRead, Vec<u8>)> {
        let mut r = LineReader::new(Trickle(input, step), 16, max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let what = r.read_line(&mut buf).unwrap();
            if what == LineRead::Eof {
                return out;
            }
            assert!(buf.len() <= max);
            out.push((what, buf.clone()));
        }
    }

    #[test]
    fn lines_caps_and_the_last_line() {
        for step in [1, 3, 100] {
            let got = all(b"ab\n\n0123456789xyz\ncd", step, 10);
            assert_eq!(
                got,
                vec![
                    (LineRead::Line, b"ab".to_vec()),
                    (LineRead::Line, b"".to_vec()),
                    (LineRead::TooLong, b"".to_vec()),
                    (LineRead::Line, b"cd".to_vec()),
                ],
                "step {step}"
            );
        }
        assert_eq!(all(b"", 1, 10), vec![]);
        assert_eq!(all(b"x\n", 1, 10), vec![(LineRead::Line, b"x".to_vec())]);
        assert_eq!(
            all(b"0123456789\n", 4, 10),
            vec![(LineRead::Line, b"0123456789".to_vec())]
        );
        assert_eq!(
            all(b"0123456789ab", 4, 10),
            vec![(LineRead::TooLong, vec![])]
        );
    }

    #[test]
    fn sees_buffered_lines() {
        let mut r = LineReader::new(&b"a\nb\nc"[..], 64, 10);
        let mut buf = Vec::new();
        assert_eq!(r.read_line(&mut buf).unwrap(), LineRead::Line);
        assert!(r.has_complete_line());
        assert_eq!(r.read_line(&mut buf).unwrap(), LineRead::Line);
        assert!(!r.has_complete_line());
        assert_eq!(r.read_line(&mut buf).unwrap(), LineRead::Line);
        assert_eq!(buf, b"c");
        assert_eq!(r.read_line(&mut buf).unwrap(), LineRead::Eof);
    }
}
