use crate::TpmError;

/// A bounded big-endian reader over TPM-marshalled bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Read from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Take `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TpmError> {
        if self.remaining() < n {
            return Err(TpmError::Truncated(what));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A `u8`.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, TpmError> {
        Ok(self.bytes(1, what)?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, TpmError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, TpmError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, TpmError> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `TPM2B_*`: a `u16` size then that many bytes, at most `limit`.
    pub fn tpm2b(&mut self, what: &'static str, limit: usize) -> Result<&'a [u8], TpmError> {
        let n = self.u16(what)? as usize;
        if n > limit {
            return Err(TpmError::TooLarge {
                what,
                size: n,
                limit,
            });
        }
        self.bytes(n, what)
    }

    /// Require that everything was read.
    pub fn finish(&self, what: &'static str) -> Result<(), TpmError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(TpmError::Trailing(what, n)),
        }
    }
}
