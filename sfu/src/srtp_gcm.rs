//! SRTP's AES-GCM ciphers (RFC 7714) for the server's sessions: aws-lc's, as str0m's default
//! provider uses, with two differences that matter when one packet is sealed for each of
//! hundreds of subscribers.
//!
//! - The payload is sealed from where it is into the datagram. The default cipher copies it
//!   into the datagram first and seals it there: a copy of every payload byte per subscriber.
//! - aws-lc's context (the expanded key and the GHASH table, 584 bytes) lives in the cipher
//!   object that str0m holds, not behind a pointer of its own. `Rtc::send_lines` names every
//!   line of that object, so the shard prefetches the key with the rest of the subscriber's
//!   session (`prefetch`); with the default cipher, the key was a miss behind a miss per send
//!   (profiled, BENCHMARKS.md session 12: the cipher's symbols 9.5% of the server's samples,
//!   the AES work itself 2.1 points of them; 5.5% with these).
//!
//! Everything else (AES-CM, key derivation, DTLS, hashes) is str0m's default provider.

use std::fmt;
use std::ptr::null_mut;
use std::sync::{Arc, OnceLock};

use aws_lc_sys as lc;
use str0m::config::CryptoProvider;
use str0m::crypto::{
    AeadAes128GcmCipher, AeadAes256GcmCipher, CryptoError, SrtpProvider, SupportedAeadAes128Gcm,
    SupportedAeadAes256Gcm, SupportedAes128CmSha1_80, from_feature_flags,
};

/// The GCM tag's length in SRTP (RFC 7714: 16 octets for both key sizes).
const TAG: usize = 16;
/// The GCM nonce's length in SRTP (RFC 7714: 12 octets, from the salt, SSRC and index).
const NONCE: usize = 12;
/// The longest authenticated header given in parts that is joined on the stack: SRTCP's
/// (8 octets of header, 4 of index) with room to spare; a longer one is joined on the heap.
const AAD_ON_STACK: usize = 64;

/// The crypto provider for the server's sessions: str0m's default with [`Gcm`] ciphers.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                srtp_provider: &Srtp,
                ..from_feature_flags()
            })
        })
        .clone()
}

/// str0m's default SRTP provider, for what this module leaves to it.
fn fallback() -> &'static dyn SrtpProvider {
    from_feature_flags().srtp_provider
}

/// SRTP with [`Gcm`] for the AEAD profiles.
#[derive(Debug)]
struct Srtp;

impl SrtpProvider for Srtp {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        fallback().aes_128_cm_sha1_80()
    }

    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        &Factory
    }

    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        &Factory
    }

    fn srtp_aes_128_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        fallback().srtp_aes_128_ecb_round(key, input, output)
    }

    fn srtp_aes_256_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        fallback().srtp_aes_256_ecb_round(key, input, output)
    }
}

/// Makes [`Gcm`] ciphers of both key sizes.
#[derive(Debug)]
struct Factory;

impl SupportedAeadAes128Gcm for Factory {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn AeadAes128GcmCipher> {
        Gcm::boxed(&key)
    }
}

impl SupportedAeadAes256Gcm for Factory {
    fn create_cipher(&self, key: [u8; 32], _encrypt: bool) -> Box<dyn AeadAes256GcmCipher> {
        Gcm::boxed(&key)
    }
}

/// An AES-GCM key, its aws-lc context held in place (GCM seals and opens with the same one).
struct Gcm {
    ctx: lc::EVP_AEAD_CTX,
}

// SAFETY: the context is plain memory owned by this object (its `aead` pointer is to a static
// of aws-lc's); aws-lc's seal and open only read it, so sharing or moving the object between
// threads is sound.
unsafe impl Send for Gcm {}
// SAFETY: as above.
unsafe impl Sync for Gcm {}

impl Gcm {
    /// A cipher for a 16- or 32-byte key, initialised where it stays: aws-lc aligns its state
    /// by the context's address, so the context must not move after `EVP_AEAD_CTX_init`.
    fn boxed(key: &[u8]) -> Box<Gcm> {
        // SAFETY: these return pointers to aws-lc's static algorithm descriptions.
        let aead = unsafe {
            match key.len() {
                16 => lc::EVP_aead_aes_128_gcm(),
                32 => lc::EVP_aead_aes_256_gcm(),
                n => unreachable!("an AES-GCM key of {n} bytes"),
            }
        };
        // SAFETY: an all-zero context is what `EVP_AEAD_CTX_zero` makes of one.
        let mut cipher = Box::new(Gcm {
            ctx: unsafe { std::mem::zeroed() },
        });
        // SAFETY: the context is in its box for good; `key` is valid for its length; no
        // engine. Init fails only for a key length the algorithm does not take.
        let ok = unsafe {
            lc::EVP_AEAD_CTX_init(
                &mut cipher.ctx,
                aead,
                key.as_ptr(),
                key.len(),
                TAG,
                null_mut(),
            )
        };
        assert_eq!(ok, 1, "aws-lc takes a {}-byte AES-GCM key", key.len());
        cipher
    }

    /// Seals `input` into `output` (its ciphertext, then the tag), authenticating `aad`.
    fn seal(
        &self,
        iv: &[u8; NONCE],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        let mut written = 0;
        // SAFETY: every pointer is valid for the length passed with it; `output` and `input`
        // are distinct borrows, so they do not overlap; aws-lc writes at most `output.len()`.
        let ok = unsafe {
            lc::EVP_AEAD_CTX_seal(
                &self.ctx,
                output.as_mut_ptr(),
                &mut written,
                output.len(),
                iv.as_ptr(),
                NONCE,
                input.as_ptr(),
                input.len(),
                aad.as_ptr(),
                aad.len(),
            )
        };
        if ok != 1 || written != input.len() + TAG {
            return Err(CryptoError::Other(format!(
                "AES-GCM seal of {} bytes into {} failed",
                input.len(),
                output.len()
            )));
        }
        Ok(())
    }

    /// Opens `input` (ciphertext, then the tag) into `output`, checking the tag over the
    /// ciphertext and `aads` (concatenated); returns the plaintext's length.
    fn open(
        &self,
        iv: &[u8; NONCE],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let failed = || CryptoError::Other(format!("AES-GCM open of {} bytes failed", input.len()));
        let Some(len) = input.len().checked_sub(TAG).filter(|&n| n <= output.len()) else {
            return Err(failed());
        };
        // SRTCP passes its header and its index apart: joined on the stack (12 bytes then),
        // not in an allocation per received RTCP packet. An RTP header comes whole.
        let mut on_stack;
        let joined;
        let aad = match aads {
            [one] => *one,
            many => {
                let total: usize = many.iter().map(|part| part.len()).sum();
                if total <= AAD_ON_STACK {
                    on_stack = [0_u8; AAD_ON_STACK];
                    let mut at = 0;
                    for part in many {
                        on_stack[at..at + part.len()].copy_from_slice(part);
                        at += part.len();
                    }
                    &on_stack[..total]
                } else {
                    joined = many.concat();
                    &joined
                }
            }
        };
        let (ciphertext, tag) = input.split_at(len);
        // SAFETY: every pointer is valid for the length passed with it; `output` (at least
        // `len` bytes) and `input` are distinct borrows, so they do not overlap.
        let ok = unsafe {
            lc::EVP_AEAD_CTX_open_gather(
                &self.ctx,
                output.as_mut_ptr(),
                iv.as_ptr(),
                NONCE,
                ciphertext.as_ptr(),
                len,
                tag.as_ptr(),
                TAG,
                aad.as_ptr(),
                aad.len(),
            )
        };
        if ok != 1 {
            return Err(failed());
        }
        Ok(len)
    }
}

impl Drop for Gcm {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `boxed` and is cleaned up once.
        unsafe { lc::EVP_AEAD_CTX_cleanup(&mut self.ctx) };
    }
}

impl fmt::Debug for Gcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gcm").finish_non_exhaustive()
    }
}

/// str0m has a cipher trait per key size, of one shape; [`Gcm`] serves both.
macro_rules! aead_cipher {
    ($($cipher:ident),+) => {$(
        impl $cipher for Gcm {
            fn encrypt(
                &mut self,
                iv: &[u8; NONCE],
                aad: &[u8],
                input: &[u8],
                output: &mut [u8],
            ) -> Result<(), CryptoError> {
                self.seal(iv, aad, input, output)
            }

            fn decrypt(
                &mut self,
                iv: &[u8; NONCE],
                aads: &[&[u8]],
                input: &[u8],
                output: &mut [u8],
            ) -> Result<usize, CryptoError> {
                self.open(iv, aads, input, output)
            }
        }
    )+};
}

aead_cipher!(AeadAes128GcmCipher, AeadAes256GcmCipher);

#[cfg(test)]
mod tests {
    use super::*;

    const IV: [u8; NONCE] = [7; NONCE];
    const HEADER: &[u8] = &[0x80, 0x60, 0, 1, 0, 0, 0, 9, 0, 0, 0, 42];

    /// One interface over both key sizes' traits, for the tests.
    trait Cipher {
        fn seal(&mut self, aad: &[u8], input: &[u8], output: &mut [u8]);
        fn open(&mut self, aads: &[&[u8]], input: &[u8], output: &mut [u8]) -> Option<usize>;
    }

    macro_rules! test_cipher {
        ($($cipher:ident),+) => {$(
            impl Cipher for Box<dyn $cipher> {
                fn seal(&mut self, aad: &[u8], input: &[u8], output: &mut [u8]) {
                    self.encrypt(&IV, aad, input, output).unwrap()
                }
                fn open(&mut self, aads: &[&[u8]], input: &[u8], output: &mut [u8]) -> Option<usize> {
                    self.decrypt(&IV, aads, input, output).ok()
                }
            }
        )+};
    }

    test_cipher!(AeadAes128GcmCipher, AeadAes256GcmCipher);

    /// `srtp`'s cipher for a 16- or 32-byte key, through the traits str0m calls.
    fn cipher(srtp: &dyn SrtpProvider, key: &[u8], encrypt: bool) -> Box<dyn Cipher> {
        match key.len() {
            16 => Box::new(
                srtp.aead_aes_128_gcm()
                    .create_cipher(key.try_into().unwrap(), encrypt),
            ),
            _ => Box::new(
                srtp.aead_aes_256_gcm()
                    .create_cipher(key.try_into().unwrap(), encrypt),
            ),
        }
    }

    /// str0m's default ciphers for a key, the reference here: (sealer, opener).
    fn reference(key: &[u8]) -> (Box<dyn Cipher>, Box<dyn Cipher>) {
        (
            cipher(fallback(), key, true),
            cipher(fallback(), key, false),
        )
    }

    /// Ours.
    fn ours(key: &[u8]) -> Box<dyn Cipher> {
        cipher(provider().srtp_provider, key, true)
    }

    #[test]
    fn what_one_seals_the_other_opens_for_both_key_sizes() {
        for key in [vec![3_u8; 16], (0..32).collect::<Vec<u8>>()] {
            let (mut theirs_seal, mut theirs_open) = reference(&key);
            let mut mine = ours(&key);
            for len in [0, 1, 15, 16, 17, 160, 1100] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let mut sealed = vec![0; len + TAG];
                let mut expected = vec![0; len + TAG];
                mine.seal(HEADER, &payload, &mut sealed);
                theirs_seal.seal(HEADER, &payload, &mut expected);
                assert_eq!(sealed, expected, "{}-byte key, {len} bytes", key.len());

                let mut opened = vec![0; len];
                assert_eq!(theirs_open.open(&[HEADER], &sealed, &mut opened), Some(len));
                assert_eq!(opened, payload);
                let mut opened = vec![0; len];
                assert_eq!(mine.open(&[HEADER], &expected, &mut opened), Some(len));
                assert_eq!(opened, payload);
            }
        }
    }

    #[test]
    fn a_changed_byte_or_header_or_a_short_buffer_is_refused() {
        let key = [9_u8; 32];
        let mut mine = ours(&key);
        let payload = [5_u8; 100];
        let mut sealed = vec![0; payload.len() + TAG];
        mine.seal(HEADER, &payload, &mut sealed);
        let mut out = vec![0; payload.len()];
        for at in [0, 50, payload.len(), sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert_eq!(mine.open(&[HEADER], &bad, &mut out), None, "byte {at}");
        }
        assert_eq!(mine.open(&[&HEADER[1..]], &sealed, &mut out), None);
        assert_eq!(mine.open(&[HEADER], &sealed[..TAG - 1], &mut out), None);
        assert_eq!(mine.open(&[HEADER], &sealed, &mut out[..10]), None);
        // The header in two parts is the same header (SRTCP authenticates its index so).
        let (a, b) = HEADER.split_at(5);
        assert_eq!(mine.open(&[a, b], &sealed, &mut out), Some(payload.len()));
        assert_eq!(out, payload);
    }

    #[test]
    fn a_header_in_parts_opens_whether_or_not_it_fits_on_the_stack() {
        let mut mine = ours(&[4_u8; 16]);
        let payload = [6_u8; 40];
        for len in [
            AAD_ON_STACK - 1,
            AAD_ON_STACK,
            AAD_ON_STACK + 1,
            3 * AAD_ON_STACK,
        ] {
            let header: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut sealed = vec![0; payload.len() + TAG];
            mine.seal(&header, &payload, &mut sealed);
            let (a, rest) = header.split_at(len / 3);
            let (b, c) = rest.split_at(rest.len() / 2);
            let mut out = vec![0; payload.len()];
            assert_eq!(
                mine.open(&[a, b, c], &sealed, &mut out),
                Some(payload.len()),
                "{len}"
            );
            assert_eq!(out, payload);
            // Each part counts: the same parts with one byte changed do not open.
            let mut other = c.to_vec();
            other[0] ^= 1;
            assert_eq!(mine.open(&[a, b, &other], &sealed, &mut out), None, "{len}");
        }
    }

    #[test]
    fn the_key_schedule_is_inside_the_cipher_object() {
        let gcm = provider().srtp_provider.aead_aes_256_gcm();
        let cipher = gcm.create_cipher([1; 32], true);
        // What `Rtc::send_lines` names for the shard to prefetch: the whole object.
        assert!(size_of_val(&*cipher) >= size_of::<lc::EVP_AEAD_CTX>());
    }
}
