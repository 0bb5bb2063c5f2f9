//! ftfy 6.3.1's mojibake repair, `ftfy.fix_encoding(text)`: text that looks like UTF-8 decoded
//! in a single-byte encoding (`"cafÃ©"`) is re-encoded and decoded as UTF-8.
//!
//! The heuristics are ftfy's own tables (`assets/gen_tables.py` writes them from ftfy): the
//! `BADNESS_RE` and `UTF8_DETECTOR_RE` patterns and the byte tables of
//! `CHARMAP_ENCODINGS` (latin-1, the `sloppy-windows-125x` codecs, iso-8859-2, macroman, cp437).

use std::collections::HashMap;
use std::sync::OnceLock;

use super::text_clean::fix_c1_controls;

const CHARMAPS: &str = include_str!("../../assets/ftfy_charmaps.tsv");
const BADNESS: &str = include_str!("../../assets/ftfy_badness.regex");
const UTF8_DETECTOR: &str = include_str!("../../assets/ftfy_utf8_detector.regex");

/// `fix_encoding` repeats single steps until the text is stable; Python has no bound.
const MAX_STEPS: usize = 64;

/// One single-byte codec of `CHARMAP_ENCODINGS`.
struct Charmap {
    name: &'static str,
    decode: [char; 256],
    encode: HashMap<char, u8>,
}

impl Charmap {
    /// `chardata.possible_encoding`: `^[\x00-\x19\x1b-\x7f{decode(0x80..=0xFF, 0x1A)}]*$`.
    fn possible(&self, text: &str) -> bool {
        text.chars().all(|c| {
            (c <= '\x7f' && c != '\x1a')
                || c == self.decode[0x1A]
                || self.decode[0x80..].contains(&c)
        })
    }

    /// `text.encode(self.name)` (only called when [`possible`](Self::possible)).
    fn encode(&self, text: &str) -> Option<Vec<u8>> {
        text.chars().map(|c| self.encode.get(&c).copied()).collect()
    }
}

fn charmaps() -> &'static [Charmap] {
    static T: OnceLock<Vec<Charmap>> = OnceLock::new();
    T.get_or_init(|| {
        CHARMAPS
            .lines()
            .filter_map(|line| {
                let (name, cps) = line.split_once('\t')?;
                let chars: Vec<char> = cps
                    .split(' ')
                    .filter_map(|h| u32::from_str_radix(h, 16).ok().and_then(char::from_u32))
                    .collect();
                let decode: [char; 256] = chars.try_into().ok()?;
                let mut encode = HashMap::with_capacity(256);
                for (b, &c) in decode.iter().enumerate() {
                    encode.entry(c).or_insert(b as u8);
                }
                Some(Charmap {
                    name,
                    decode,
                    encode,
                })
            })
            .collect()
    })
}

fn badness_re() -> Option<&'static fancy_regex::Regex> {
    static RE: OnceLock<Option<fancy_regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| fancy_regex::Regex::new(BADNESS).ok())
        .as_ref()
}

fn utf8_detector_re() -> Option<&'static fancy_regex::Regex> {
    static RE: OnceLock<Option<fancy_regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| fancy_regex::Regex::new(UTF8_DETECTOR).ok())
        .as_ref()
}

fn bytes_re(
    cell: &'static OnceLock<regex::bytes::Regex>,
    pattern: &str,
) -> &'static regex::bytes::Regex {
    cell.get_or_init(|| regex::bytes::Regex::new(pattern).expect("static regex"))
}

/// `ftfy.badness.is_bad`.
pub(crate) fn is_bad(text: &str) -> bool {
    badness_re().is_some_and(|re| re.is_match(text).unwrap_or(false))
}

/// `chardata.ALTERED_UTF8_RE`.
fn altered_utf8_re() -> &'static regex::bytes::Regex {
    static RE: OnceLock<regex::bytes::Regex> = OnceLock::new();
    bytes_re(
        &RE,
        r"(?-u)[\xc2\xc3\xc5\xce\xd0\xd9][ ]|[\xe2\xe3][ ][\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf][ ]|[\xf0][ ][\x80-\xbf][\x80-\xbf]|[\xf0][\x80-\xbf][ ][\x80-\xbf]|[\xf0][\x80-\xbf][\x80-\xbf][ ]",
    )
}

/// `fixes.restore_byte_a0`.
fn restore_byte_a0(b: &[u8]) -> Vec<u8> {
    // A_GRAVE_WORD_RE = b"\xc3 (?! |quele|quela|quilo|s )" -> b"\xc3\xa0 "
    let mut step = Vec::with_capacity(b.len() + 8);
    let mut i = 0;
    while i < b.len() {
        if b[i] == 0xC3 && b.get(i + 1) == Some(&b' ') {
            let rest = &b[i + 2..];
            let excluded = [&b" "[..], b"quele", b"quela", b"quilo", b"s "]
                .iter()
                .any(|p| rest.starts_with(p));
            if !excluded {
                step.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        step.push(b[i]);
        i += 1;
    }
    altered_utf8_re()
        .replace_all(&step, |m: &regex::bytes::Captures<'_>| {
            m[0].iter()
                .map(|&x| if x == b' ' { 0xA0 } else { x })
                .collect::<Vec<u8>>()
        })
        .into_owned()
}

/// `fixes.replace_lossy_sequences`: `LOSSY_UTF8_RE` -> U+FFFD.
fn replace_lossy_sequences(b: &[u8]) -> Vec<u8> {
    static RE: OnceLock<regex::bytes::Regex> = OnceLock::new();
    bytes_re(
        &RE,
        r"(?-u)[\xc2-\xdf][\x1a]|[\xc2-\xc3][?]|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a",
    )
    .replace_all(b, &b"\xef\xbf\xbd"[..])
    .into_owned()
}

/// ftfy's `utf-8-variants` codec (strict): UTF-8 that also accepts `C0 80` as U+0000 and
/// CESU-8 surrogate pairs. `None` where Python raises `UnicodeDecodeError`.
fn decode_utf8_variants(b: &[u8]) -> Option<String> {
    let cont = |x: u8| (0x80..=0xBF).contains(&x);
    let mut out = String::with_capacity(b.len());
    let (mut i, mut start) = (0, 0);
    while i < b.len() {
        if b[i] == 0xC0 && b.get(i + 1) == Some(&0x80) {
            out.push_str(std::str::from_utf8(&b[start..i]).ok()?);
            out.push('\0');
            i += 2;
            start = i;
        } else if b[i] == 0xED && b.get(i + 1).is_some_and(|&x| (0xA0..=0xBF).contains(&x)) {
            out.push_str(std::str::from_utf8(&b[start..i]).ok()?);
            let s = b.get(i..i + 6)?;
            if (0xA0..=0xAF).contains(&s[1])
                && cont(s[2])
                && s[3] == 0xED
                && (0xB0..=0xBF).contains(&s[4])
                && cont(s[5])
            {
                let cp = ((u32::from(s[1]) & 0x0F) << 16)
                    + ((u32::from(s[2]) & 0x3F) << 10)
                    + ((u32::from(s[4]) & 0x0F) << 6)
                    + (u32::from(s[5]) & 0x3F)
                    + 0x10000;
                out.push(char::from_u32(cp)?);
                i += 6;
                start = i;
            } else {
                return None;
            }
        } else {
            i += 1;
        }
    }
    out.push_str(std::str::from_utf8(&b[start..]).ok()?);
    Some(out)
}

/// `fixes.decode_inconsistent_utf8`: fixes each `UTF8_DETECTOR_RE` match on its own when it
/// is shorter than the text and looks bad.
fn decode_inconsistent_utf8(re: &fancy_regex::Regex, text: &str, depth: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in re.find_iter(text) {
        let Ok(m) = m else { return text.to_string() };
        out.push_str(&text[last..m.start()]);
        let sub = m.as_str();
        if sub.len() < text.len() && is_bad(sub) {
            out.push_str(&fix_encoding_depth(sub, depth + 1));
        } else {
            out.push_str(sub);
        }
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

/// `_fix_encoding_one_step_and_explain` without the explanation.
fn one_step(text: &str, depth: usize) -> String {
    if text.is_empty() || text.is_ascii() || !is_bad(text) {
        return text.to_string();
    }
    let mut possible_latin1 = false;
    for cm in charmaps() {
        if !cm.possible(text) {
            continue;
        }
        possible_latin1 |= cm.name == "latin-1";
        let Some(mut bytes) = cm.encode(text) else {
            continue;
        };
        if cm.name != "macroman" && altered_utf8_re().is_match(&bytes) {
            bytes = restore_byte_a0(&bytes);
        }
        if cm.name.starts_with("sloppy") {
            bytes = replace_lossy_sequences(&bytes);
        }
        let decoded = if bytes.contains(&0xED) || bytes.contains(&0xC0) {
            decode_utf8_variants(&bytes)
        } else {
            String::from_utf8(bytes).ok()
        };
        if let Some(fixed) = decoded {
            return fixed;
        }
    }
    if let Some(re) = utf8_detector_re()
        && re.is_match(text).unwrap_or(false)
    {
        let fixed = decode_inconsistent_utf8(re, text, depth);
        if fixed != text {
            return fixed;
        }
    }
    if possible_latin1 {
        // `"windows-1252" in possible_1byte_encodings` is never true (the list names
        // "sloppy-windows-1252"), so ftfy tries latin-1 -> strict windows-1252.
        let undefined = |c: char| matches!(c, '\u{81}' | '\u{8D}' | '\u{8F}' | '\u{90}' | '\u{9D}');
        if !text.chars().any(undefined) {
            let fixed = fix_c1_controls(text);
            if fixed != text {
                return fixed.into_owned();
            }
        }
    }
    if text.chars().any(|c| matches!(c, '\u{80}'..='\u{9F}')) {
        return fix_c1_controls(text).into_owned();
    }
    text.to_string()
}

fn fix_encoding_depth(text: &str, depth: usize) -> String {
    let mut text = text.to_string();
    if depth > MAX_STEPS {
        return text;
    }
    for _ in 0..MAX_STEPS {
        let next = one_step(&text, depth);
        if next == text {
            break;
        }
        text = next;
    }
    text
}

/// `ftfy.fix_encoding(text)`.
pub(crate) fn fix_encoding(text: &str) -> String {
    fix_encoding_depth(text, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_load() {
        assert_eq!(charmaps().len(), 10);
        assert!(badness_re().is_some());
        assert!(utf8_detector_re().is_some());
    }

    #[test]
    fn ftfy_docstring_examples() {
        assert_eq!(fix_encoding("Ã³"), "ó");
        assert_eq!(fix_encoding("sÃ³"), "só");
        assert_eq!(fix_encoding("voilÃ le travail"), "voilà le travail");
        assert_eq!(fix_encoding("âœ” No problems"), "✔ No problems");
        assert_eq!(fix_encoding("&ATILDE;&SUP3;"), "&ATILDE;&SUP3;");
        assert_eq!(fix_encoding("naïve café"), "naïve café");
    }
}
