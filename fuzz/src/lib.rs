//! Helpers shared by the fuzz targets: the text format of their inputs.
//!
//! The header and webhook targets read an HTTP-message-like text rather than `arbitrary`'s
//! byte encoding, so the seed corpora are real requests and header sets a person can read and
//! extend, and libFuzzer's mutations of them stay meaningful:
//!
//! ```text
//! <first line>
//! <name>: <value>
//! <name>: <value>
//!
//! <body bytes, anything, up to the end of the input>
//! ```
//!
//! Any byte string is a valid input: the head (up to the first empty line) is read as UTF-8
//! with invalid bytes replaced, a trailing `\r` is dropped from each line, a header line
//! without `:` is a header with an empty value, and the body is the raw bytes after the empty
//! line.

use edge_isr::http::Headers;

/// One parsed input: the first line, the header lines, and the raw body.
#[derive(Debug)]
pub struct Message {
    /// The first line (a status for responses, `METHOD URL` for requests).
    pub first_line: String,
    /// The header fields, in order (names lower-cased by [`Headers`]).
    pub headers: Headers,
    /// Everything after the first empty line.
    pub body: Vec<u8>,
}

/// Splits `data` into a [`Message`]; never fails.
pub fn parse_message(data: &[u8]) -> Message {
    let (head, body) = match find(data, b"\n\n") {
        Some(i) => (&data[..i], data[i + 2..].to_vec()),
        None => match find(data, b"\r\n\r\n") {
            Some(i) => (&data[..i], data[i + 4..].to_vec()),
            None => (data, Vec::new()),
        },
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first_line = lines.next().unwrap_or("").to_string();
    let mut headers = Headers::new();
    for line in lines {
        match line.split_once(':') {
            Some((name, value)) => headers.append(name, value.trim_start_matches([' ', '\t'])),
            None => headers.append(line, ""),
        }
    }
    Message { first_line, headers, body }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
