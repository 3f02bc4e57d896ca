//! Splitting a callback's output into lines of bounded length.

/// Output lines longer than this are split (a callback printing a huge line without a
/// newline must not grow supd's memory).
pub const MAX_LINE: usize = 64 * 1024;

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Default)]
pub(super) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    pub(super) fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(String)) {
        while let Some(pos) = chunk.iter().position(|b| *b == b'\n') {
            let (line, rest) = chunk.split_at(pos);
            chunk = rest.get(1..).unwrap_or_default();
            if self.partial.is_empty() {
                emit(text(line));
            } else {
                self.partial.extend_from_slice(line);
                emit(text(&std::mem::take(&mut self.partial)));
            }
        }
        self.partial.extend_from_slice(chunk);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            emit(text(&std::mem::replace(&mut self.partial, rest)));
        }
    }

    pub(super) fn finish(&mut self, emit: impl FnOnce(String)) {
        if !self.partial.is_empty() {
            emit(text(&std::mem::take(&mut self.partial)));
        }
    }
}

fn text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for chunk in chunks {
            lines.feed(chunk, |l| out.push(l));
        }
        lines.finish(|l| out.push(l));
        out
    }

    #[test]
    fn lines_split_and_join() {
        assert_eq!(split(&[b"a\nb", b"c\n", b"d"]), ["a", "bc", "d"]);
        assert_eq!(split(&[b"\n\r\n"]), ["", ""]);
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let out = split(&[&long]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].len(), 5);
        assert_eq!(split(&[b"\xff\n"]), ["\u{fffd}"]);
    }
}
