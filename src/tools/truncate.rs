//! Truncation for the model: keep the head and the tail, say what was left out.
//!
//! The start of an output usually says what ran and the end says how it finished, so both are
//! kept and the middle is replaced by an explicit marker (the lesson of codex-rs'
//! `truncate.rs`). Cuts fall on UTF-8 character boundaries.

/// Keeps about `max_bytes` of `text`: the first half and the last half, joined by a
/// `[… N lines / N bytes omitted …]` marker line. Text that fits is returned unchanged.
///
/// The marker itself is not counted in `max_bytes`.
pub fn truncate_head_tail(text: &str, max_bytes: usize) -> String {
    HeadTail::whole(text).render(max_bytes)
}

/// A text seen as a kept head, a kept tail and an already dropped middle. Streams that are
/// captured with a bounded buffer (command output) land here too, so that one rendering
/// produces one marker with the true totals.
#[derive(Debug, Default, Clone)]
pub(crate) struct HeadTail {
    pub head: String,
    pub tail: String,
    pub omitted_bytes: usize,
    pub omitted_lines: usize,
}

impl HeadTail {
    pub fn whole(text: &str) -> Self {
        HeadTail {
            head: text.to_owned(),
            ..HeadTail::default()
        }
    }

    pub fn kept_len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept_len() == 0 && self.omitted_bytes == 0
    }

    /// Renders within `max_bytes` (plus the marker line).
    pub fn render(&self, max_bytes: usize) -> String {
        if self.omitted_bytes == 0 && self.kept_len() <= max_bytes {
            let mut out = String::with_capacity(self.kept_len());
            out.push_str(&self.head);
            out.push_str(&self.tail);
            return out;
        }
        let head_budget = max_bytes / 2;
        let tail_budget = max_bytes - head_budget;

        // Work on the joined text when no middle was dropped yet, so that a short head does
        // not waste budget the tail could use.
        let (head_src, tail_src): (&str, &str);
        let joined;
        if self.omitted_bytes == 0 {
            joined = format!("{}{}", self.head, self.tail);
            head_src = &joined;
            tail_src = &joined;
            let head_end = floor_char_boundary(head_src, head_budget);
            let tail_start =
                ceil_char_boundary(tail_src, tail_src.len() - tail_budget).max(head_end);
            let middle = &joined[head_end..tail_start];
            return join(
                &joined[..head_end],
                &joined[tail_start..],
                middle.len(),
                count_lines(middle),
            );
        }
        head_src = &self.head;
        tail_src = &self.tail;
        let head_end = floor_char_boundary(head_src, head_budget.min(head_src.len()));
        let tail_start = ceil_char_boundary(tail_src, tail_src.len().saturating_sub(tail_budget));
        let dropped_head = &head_src[head_end..];
        let dropped_tail = &tail_src[..tail_start];
        join(
            &head_src[..head_end],
            &tail_src[tail_start..],
            self.omitted_bytes + dropped_head.len() + dropped_tail.len(),
            self.omitted_lines + count_lines(dropped_head) + count_lines(dropped_tail),
        )
    }
}

fn join(head: &str, tail: &str, omitted_bytes: usize, omitted_lines: usize) -> String {
    let mut out = String::with_capacity(head.len() + tail.len() + 64);
    out.push_str(head);
    if !head.is_empty() && !head.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&marker(omitted_lines, omitted_bytes));
    out.push('\n');
    out.push_str(tail);
    out
}

/// The marker line, e.g. `[… 120 lines / 4096 bytes omitted …]`.
pub(crate) fn marker(lines: usize, bytes: usize) -> String {
    format!("[… {lines} lines / {bytes} bytes omitted …]")
}

fn count_lines(s: &str) -> usize {
    s.bytes().filter(|&b| b == b'\n').count()
}

/// The largest char boundary `<= i`.
pub(crate) fn floor_char_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    let mut i = i;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary `>= i`.
pub(crate) fn ceil_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i;
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

/// Collects a byte stream of unknown length in bounded memory: the first `cap` bytes and the
/// last `cap` bytes, counting what falls in between.
pub(crate) struct StreamCapture {
    cap: usize,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    omitted_bytes: usize,
    omitted_lines: usize,
}

impl StreamCapture {
    pub fn new(cap: usize) -> Self {
        StreamCapture {
            cap,
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            omitted_bytes: 0,
            omitted_lines: 0,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        if self.head.len() < self.cap {
            let n = (self.cap - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        for &b in data {
            if self.tail.len() == self.cap {
                if let Some(old) = self.tail.pop_front() {
                    self.omitted_bytes += 1;
                    if old == b'\n' {
                        self.omitted_lines += 1;
                    }
                }
            }
            self.tail.push_back(b);
        }
    }

    /// Lossy UTF-8: a command may print anything; the model gets replacement characters.
    pub fn finish(self) -> HeadTail {
        let tail: Vec<u8> = self.tail.into_iter().collect();
        if self.omitted_bytes == 0 {
            let mut all = self.head;
            all.extend_from_slice(&tail);
            return HeadTail::whole(&String::from_utf8_lossy(&all));
        }
        HeadTail {
            head: String::from_utf8_lossy(&self.head).into_owned(),
            tail: String::from_utf8_lossy(&tail).into_owned(),
            omitted_bytes: self.omitted_bytes,
            omitted_lines: self.omitted_lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_unchanged() {
        assert_eq!(truncate_head_tail("abc\n", 10), "abc\n");
    }

    #[test]
    fn keeps_head_and_tail_on_char_boundaries() {
        let text = "é".repeat(100);
        let out = truncate_head_tail(&text, 11);
        // 11 bytes: 5 for the head (2 two-byte chars fit), 6 for the tail (3 chars).
        assert_eq!(out, "éé\n[… 0 lines / 190 bytes omitted …]\nééé");
    }

    #[test]
    fn capture_matches_whole() {
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let mut cap = StreamCapture::new(100);
        for chunk in text.as_bytes().chunks(7) {
            cap.push(chunk);
        }
        let rendered = cap.finish().render(100);
        assert_eq!(rendered, truncate_head_tail(&text, 100));
    }
}
