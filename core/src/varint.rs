//! Unsigned LEB128 varints, the building block of the stored encoding.

/// Where encoded bytes go: a growing `Vec`, or a fixed buffer on the stack.
pub(crate) trait Sink {
    /// Appends one byte.
    fn push(&mut self, byte: u8);
    /// Appends several bytes.
    fn extend(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A fixed buffer that remembers whether it overflowed (it then holds a prefix).
pub(crate) struct SliceSink<'a> {
    buffer: &'a mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'a> SliceSink<'a> {
    pub(crate) fn new(buffer: &'a mut [u8]) -> Self {
        Self {
            buffer,
            len: 0,
            overflowed: false,
        }
    }

    /// The bytes written, or `None` if they did not all fit.
    pub(crate) fn written(&self) -> Option<usize> {
        (!self.overflowed).then_some(self.len)
    }
}

impl Sink for SliceSink<'_> {
    fn push(&mut self, byte: u8) {
        match self.buffer.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
            }
            None => self.overflowed = true,
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        match self.buffer.get_mut(self.len..self.len + bytes.len()) {
            Some(slots) => {
                slots.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflowed = true,
        }
    }
}

/// Counts the bytes an encoding takes, writing nothing.
#[derive(Default)]
pub(crate) struct CountingSink(pub(crate) usize);

impl Sink for CountingSink {
    fn push(&mut self, _byte: u8) {
        self.0 += 1;
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Appends `n` as a varint.
pub(crate) fn put(out: &mut impl Sink, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads varints and bytes from a buffer, refusing truncated or overlong input.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    /// Nothing left to read.
    pub(crate) fn is_empty(&self) -> bool {
        self.position >= self.bytes.len()
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes.get(self.position..).unwrap_or_default();
        self.position = self.bytes.len();
        rest
    }

    /// The next `len` bytes.
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        let end = self.position.checked_add(len).ok_or("truncated")?;
        let bytes = self.bytes.get(self.position..end).ok_or("truncated")?;
        self.position = end;
        Ok(bytes)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, &'static str> {
        let byte = *self.bytes.get(self.position).ok_or("truncated")?;
        self.position += 1;
        Ok(byte)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, &'static str> {
        let rest = self.bytes.get(self.position..).unwrap_or_default();
        // Most numbers of a state are below 128: one byte, one branch.
        match rest.first() {
            Some(&byte) if byte < 0x80 => {
                self.position += 1;
                return Ok(u64::from(byte));
            }
            _ => {}
        }
        let mut value = 0u64;
        for (index, &byte) in rest.iter().take(MAX_LEN).enumerate() {
            let shift = 7 * index as u32;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("varint overflows 64 bits");
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                // A last byte of 0 after others pads the number: one value, one encoding
                // (what `put` writes), so a decoded state re-encodes to the same bytes.
                if byte == 0 && index > 0 {
                    return Err("varint not in its shortest form");
                }
                self.position += index + 1;
                return Ok(value);
            }
        }
        if rest.len() < MAX_LEN {
            Err("truncated")
        } else {
            Err("varint overflows 64 bits")
        }
    }
}

/// The most bytes a 64-bit varint takes.
const MAX_LEN: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn overlong_and_truncated_varints_are_refused() {
        assert!(Reader::new(&[0x80]).varint().is_err());
        let overlong = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(Reader::new(&overlong).varint().is_err());
    }

    #[test]
    fn truncated_varints_say_so() {
        assert_eq!(Reader::new(&[]).varint(), Err("truncated"));
        assert_eq!(Reader::new(&[0x80, 0x80]).varint(), Err("truncated"));
        let mut reader = Reader::new(&[0x05, 0x80, 0x01, 0x7f]);
        assert_eq!(reader.varint(), Ok(5));
        assert_eq!(reader.varint(), Ok(128));
        assert_eq!(reader.varint(), Ok(127));
        assert!(reader.is_empty());
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&max).varint(), Ok(u64::MAX));
    }

    #[test]
    fn padded_varints_are_refused() {
        // Found by `fuzz/` (decode): 5 written as [0x85, 0x00] decoded, and re-encoded
        // as [0x05], so a stored state had two encodings.
        assert_eq!(
            Reader::new(&[0x85, 0x00]).varint(),
            Err("varint not in its shortest form")
        );
        assert!(Reader::new(&[0x80, 0x80, 0x00]).varint().is_err());
        assert_eq!(Reader::new(&[0x00]).varint(), Ok(0));
        assert_eq!(Reader::new(&[0x80, 0x01]).varint(), Ok(128));
    }

    proptest! {
        #[test]
        fn varints_round_trip(n in any::<u64>()) {
            let mut out = Vec::new();
            put(&mut out, n);
            prop_assert_eq!(Reader::new(&out).varint(), Ok(n));
        }

        #[test]
        fn a_decoded_varint_has_one_encoding(bytes in proptest::collection::vec(any::<u8>(), 1..11)) {
            let mut reader = Reader::new(&bytes);
            if let Ok(n) = reader.varint() {
                let mut out = Vec::new();
                put(&mut out, n);
                prop_assert_eq!(&out[..], &bytes[..reader.position()]);
            }
        }
    }
}
