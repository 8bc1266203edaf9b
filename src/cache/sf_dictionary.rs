//! RFC 8941 Structured Field Dictionaries, as far as targeted cache-control
//! fields (RFC 9213 §2.1) need them: a strict parser that accepts a field or
//! rejects it whole. `CDN-Cache-Control: max-age=10000, &&&&&` is not a
//! dictionary, so the field is ignored rather than half-obeyed.
//!
//! Member keys are compared lowercased (RFC 8941 allows only lowercase keys;
//! accepting `Max-Age` loses nothing and matches `Cache-Control` habits).
//! Parameters are checked for syntax and dropped: no cache directive uses
//! them.

/// A member's value, reduced to what cache directives can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Integer(i64),
    Boolean(bool),
    String(String),
    /// Decimal, token, byte sequence or inner list: valid, never a
    /// directive's expected type.
    Other,
}

/// The members of `field` in order (a later duplicate key replaces an
/// earlier one, RFC 8941 §4.2.2), or `None` if it is not a valid dictionary.
/// An empty field is `None`: RFC 9213 §2.1 ignores it.
pub(super) fn parse(field: &str) -> Option<Vec<(String, Value)>> {
    let mut p = Parser {
        s: field.as_bytes(),
        i: 0,
    };
    p.skip(|b| b == b' ');
    if p.done() {
        return None;
    }
    let mut out: Vec<(String, Value)> = Vec::new();
    loop {
        let key = p.key()?;
        let value = if p.eat(b'=') {
            if p.peek() == Some(b'(') {
                p.inner_list()?;
                Value::Other
            } else {
                let v = p.bare_item()?;
                p.parameters()?;
                v
            }
        } else {
            p.parameters()?;
            Value::Boolean(true)
        };
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
        p.skip(|b| b == b' ' || b == b'\t');
        if p.done() {
            return Some(out);
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip(|b| b == b' ' || b == b'\t');
        if p.done() {
            return None; // trailing comma
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn key(&mut self) -> Option<String> {
        let start = self.i;
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'*' => self.i += 1,
            _ => return None,
        }
        self.skip(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'*'));
        Some(String::from_utf8_lossy(&self.s[start..self.i]).to_ascii_lowercase())
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip(|b| b == b' ');
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn inner_list(&mut self) -> Option<()> {
        self.eat(b'(');
        loop {
            self.skip(|b| b == b' ');
            if self.eat(b')') {
                return self.parameters();
            }
            self.bare_item()?;
            self.parameters()?;
            if !matches!(self.peek(), Some(b' ') | Some(b')')) {
                return None;
            }
        }
    }

    fn bare_item(&mut self) -> Option<Value> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string().map(Value::String),
            b'?' => {
                self.i += 1;
                let v = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.i += 1;
                Some(Value::Boolean(v))
            }
            b':' => {
                self.i += 1;
                self.skip(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                self.eat(b':').then_some(Value::Other)
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.i += 1;
                self.skip(|b| b.is_ascii_alphanumeric() || b":/!#$%&'*+-.^_`|~".contains(&b));
                Some(Value::Other)
            }
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Value> {
        let negative = self.eat(b'-');
        let start = self.i;
        self.skip(|b| b.is_ascii_digit());
        let int_digits = self.i - start;
        if int_digits == 0 {
            return None;
        }
        if self.eat(b'.') {
            let frac = self.i;
            self.skip(|b| b.is_ascii_digit());
            let frac_digits = self.i - frac;
            return (int_digits <= 12 && (1..=3).contains(&frac_digits)).then_some(Value::Other);
        }
        if int_digits > 15 {
            return None;
        }
        let n: i64 = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()?;
        Some(Value::Integer(if negative { -n } else { n }))
    }

    fn string(&mut self) -> Option<String> {
        self.eat(b'"');
        let mut out = String::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.i += 1;
                    let c = self.peek()?;
                    if c != b'"' && c != b'\\' {
                        return None;
                    }
                    out.push(c as char);
                    self.i += 1;
                }
                c @ 0x20..=0x7e => {
                    out.push(c as char);
                    self.i += 1;
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries_and_their_values() {
        let d =
            parse("max-age=3600, no-store, private=\"x-a\", a=?0, b=1.5, c=tok, d=(1 2)").unwrap();
        assert_eq!(
            d,
            vec![
                ("max-age".into(), Value::Integer(3600)),
                ("no-store".into(), Value::Boolean(true)),
                ("private".into(), Value::String("x-a".into())),
                ("a".into(), Value::Boolean(false)),
                ("b".into(), Value::Other),
                ("c".into(), Value::Other),
                ("d".into(), Value::Other),
            ]
        );
        assert_eq!(
            parse("max-age=1;x=2, max-age=5").unwrap(),
            vec![("max-age".into(), Value::Integer(5))],
            "a later duplicate replaces an earlier one"
        );
        assert_eq!(
            parse("MaX-aGe=60").unwrap(),
            vec![("max-age".into(), Value::Integer(60))]
        );
    }

    #[test]
    fn anything_else_is_rejected_whole() {
        for bad in [
            "",
            "   ",
            "max-age=10000, &&&&&",
            "max-age =100",
            "max-age= 100",
            "max-age=100,",
            "max-age=1234567890123456",
            "a=\"unterminated",
            "a=?2",
            "a=1.2345",
            "1a",
            "a=(1 2",
            "a=\"\\n\"",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
