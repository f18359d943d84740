//! sha256 digests as OCI writes them: `sha256:<64 lowercase hex>`.

use sha2::{Digest as _, Sha256};

use crate::{Error, Result};

/// The digest of `bytes`.
pub fn of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Checks a digest string and returns its hex part. Only sha256 is
/// accepted, so a digest can always be used as a file name.
pub fn hex_part(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(h)
        }
        _ => Err(Error::InvalidDigest(digest.to_string())),
    }
}

/// Hashes what is read through it.
pub(crate) struct HashingReader<R> {
    pub inner: R,
    pub hasher: Sha256,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The digest of everything read so far.
    pub fn digest(self) -> String {
        format!("sha256:{}", hex(&self.hasher.finalize()))
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let d = of(b"abc");
        assert_eq!(
            d,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hex_part(&d).is_ok());
        for bad in ["sha256:../../etc", "md5:abc", "sha256:ABC", &d[..70]] {
            assert!(hex_part(bad).is_err(), "{bad}");
        }
    }
}
