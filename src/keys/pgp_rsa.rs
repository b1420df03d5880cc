//! RSA decryption of OpenPGP session keys, in constant time.
//!
//! Sequoia's pure-Rust backend decrypts RSA with a variable-time bignum
//! (the reason the Nettle feature exists) and spends ~8 ms on an RSA-3072
//! key here. This decryptor does the private-key operation with the
//! fixed-size Montgomery arithmetic of [`super::montgomery`]: CRT with
//! both halves in constant time, the input reduced without division,
//! the result checked against the ciphertext (`m^e = c`, against faults)
//! and the PKCS #1 v1.5 padding removed without branching on its bytes.
//! Keys whose primes do not fit the supported sizes (RSA up to 4096 bits)
//! fall back to Sequoia.

use std::fmt;

use rsa::BigUint;
use sequoia_openpgp as openpgp;
use subtle::{ConstantTimeEq, ConstantTimeLess};
use zeroize::Zeroize;

use openpgp::crypto::mpi::{self, Ciphertext};
use openpgp::crypto::{Decryptor, SessionKey};
use openpgp::packet::key::{PublicParts, SecretKeyMaterial, SecretParts, UnspecifiedRole};
use openpgp::packet::Key;

use super::montgomery::{
    add_wide, limbs_from_be, limbs_from_biguint, limbs_to_be, mul_wide, Modulus,
};
use super::pgp_split::RsaSecret;

/// The CRT form of one RSA private key with primes of at most `64N` bits
/// (`N2 = 2N` limbs for the modulus).
struct Crt<const N: usize, const N2: usize> {
    p: Modulus<N>,
    q: Modulus<N>,
    /// `p` itself, for the recombination `m1 + p·h`.
    p_limbs: [u64; N],
    d_p: [u64; N],
    d_q: [u64; N],
    /// `p^-1 mod q` (OpenPGP's `u`).
    u: [u64; N],
    n_limbs: [u64; N2],
    e: Vec<u8>,
    /// Byte length of the modulus: the padded message's length.
    k: usize,
}

impl<const N: usize, const N2: usize> Drop for Crt<N, N2> {
    fn drop(&mut self) {
        self.p_limbs.zeroize();
        self.d_p.zeroize();
        self.d_q.zeroize();
        self.u.zeroize();
    }
}

impl<const N: usize, const N2: usize> Crt<N, N2> {
    fn new(parts: &RsaParts) -> Option<Self> {
        let one = BigUint::from(1u8);
        let (p, q) = (&parts.p, &parts.q);
        if *p <= one || *q <= one || p == q || p * q != parts.n {
            return None;
        }
        // Set-up only, once per key (variable-time BigUint is fine here).
        let secret_limbs = |mut x: BigUint| {
            let limbs = limbs_from_biguint(&x);
            x.zeroize();
            limbs
        };
        let crt = Crt {
            p: Modulus::new(p)?,
            q: Modulus::new(q)?,
            p_limbs: limbs_from_biguint(p)?,
            d_p: secret_limbs(&parts.d % (p - &one))?,
            d_q: secret_limbs(&parts.d % (q - &one))?,
            u: secret_limbs(&parts.u % q)?,
            n_limbs: limbs_from_biguint(&parts.n)?,
            e: parts.e.to_bytes_be(),
            k: parts.n.to_bytes_be().len(),
        };
        // The recombination needs `u·p ≡ 1 (mod q)`.
        ((&parts.u * p) % q == one).then_some(crt)
    }

    /// `c^d mod n`, checked, as `k` big-endian bytes.
    fn private_op(&self, c_bytes: &[u8]) -> Option<Vec<u8>> {
        let c: [u64; N2] = limbs_from_be(c_bytes)?;
        if !bool::from(limbs_lt(&c, &self.n_limbs)) {
            return None;
        }
        let (lo, hi) = split::<N, N2>(&c);
        let (mut m1, mut m2) = self.both_halves(&lo, &hi);
        // h = (m2 - m1)·u mod q, all in Montgomery form mod q until the
        // product with plain u leaves it.
        let mut m1_plain = self.p.leave_mont(&m1);
        let mut m1_in_q = self.q.enter_mont(&m1_plain);
        let mut h = self.q.mul(&self.q.sub(&m2, &m1_in_q), &self.u);
        let mut ph: [u64; N2] = mul_wide::<N, N2>(&self.p_limbs, &h);
        let mut m: [u64; N2] = add_wide(&ph, &m1_plain);
        ph.zeroize();
        m1.zeroize();
        m2.zeroize();
        m1_in_q.zeroize();
        h.zeroize();
        m1_plain.zeroize();
        // Fault check: m^e must give back c, modulo p and modulo q (the
        // same as modulo n = pq, at a quarter of the cost).
        let (mut m_lo, mut m_hi) = split::<N, N2>(&m);
        let ok = [&self.p, &self.q]
            .iter()
            .fold(subtle::Choice::from(1), |ok, prime| {
                let back = prime.pow_public(&prime.enter_mont_wide(&m_lo, &m_hi), &self.e);
                ok & back.ct_eq(&prime.enter_mont_wide(&lo, &hi))
            });
        let out = limbs_to_be(&m, self.k);
        m.zeroize();
        m_lo.zeroize();
        m_hi.zeroize();
        if bool::from(ok) {
            Some(out)
        } else {
            let mut out = out;
            out.zeroize();
            None
        }
    }

    /// `c^d_p mod p` and `c^d_q mod q` (Montgomery form) for `c = hi·2^(64N) + lo`.
    ///
    /// The two exponentiations are independent and are almost all of a
    /// decrypt, so with a second core the q half runs on a scoped thread
    /// (about 1.2 ms of 2.6 ms for RSA-3072 here; starting the thread costs
    /// tens of microseconds). Not inside a rayon worker: many files are
    /// being decrypted at once and the cores are busy already. If the
    /// thread cannot be started or does not finish, that half runs here.
    fn both_halves(&self, lo: &[u64; N], hi: &[u64; N]) -> ([u64; N], [u64; N]) {
        let half_p = || self.p.pow(&self.p.enter_mont_wide(lo, hi), &self.d_p);
        let half_q = || self.q.pow(&self.q.enter_mont_wide(lo, hi), &self.d_q);
        // Asked once per process: the answer reads cgroup files.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cores =
            *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if cores < 2 || rayon::current_thread_index().is_some() {
            return (half_p(), half_q());
        }
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("kustos-rsa-crt".into())
                .spawn_scoped(scope, half_q);
            let m1 = half_p();
            let m2 = spawned.ok().and_then(|thread| thread.join().ok());
            (m1, m2.unwrap_or_else(half_q))
        })
    }
}

fn split<const N: usize, const N2: usize>(c: &[u64; N2]) -> ([u64; N], [u64; N]) {
    let mut lo = [0u64; N];
    let mut hi = [0u64; N];
    lo.copy_from_slice(&c[..N]);
    hi.copy_from_slice(&c[N..]);
    (lo, hi)
}

/// `a < b`, in constant time.
fn limbs_lt<const N: usize>(a: &[u64; N], b: &[u64; N]) -> subtle::Choice {
    let mut lt = subtle::Choice::from(0);
    let mut eq = subtle::Choice::from(1);
    for i in (0..N).rev() {
        lt |= eq & a[i].ct_lt(&b[i]);
        eq &= a[i].ct_eq(&b[i]);
    }
    lt
}

/// The message inside a PKCS #1 v1.5 encryption block
/// `00 02 PS(≥8 non-zero) 00 M`, found without branching on the bytes.
fn unpad(em: &[u8]) -> Option<Vec<u8>> {
    if em.len() < 11 {
        return None;
    }
    let mut good = em[0].ct_eq(&0) & em[1].ct_eq(&2);
    let mut found = subtle::Choice::from(0);
    let mut sep = 0u32;
    for (i, b) in em.iter().enumerate().skip(2) {
        let zero = b.ct_eq(&0);
        let first = zero & !found;
        // Keep the first separator's index.
        sep |= (i as u32) & 0u32.wrapping_sub(u32::from(first.unwrap_u8()));
        found |= zero;
    }
    good &= found;
    // At least eight padding bytes: the separator sits at index 10 or later.
    good &= !sep.ct_lt(&10);
    if bool::from(good) {
        Some(em[sep as usize + 1..].to_vec())
    } else {
        None
    }
}

/// The RSA numbers of a secret key (zeroized on drop).
struct RsaParts {
    n: BigUint,
    e: BigUint,
    d: BigUint,
    p: BigUint,
    q: BigUint,
    u: BigUint,
}

impl Drop for RsaParts {
    fn drop(&mut self) {
        self.d.zeroize();
        self.p.zeroize();
        self.q.zeroize();
        self.u.zeroize();
    }
}

enum CrtBySize {
    Rsa2048(Box<Crt<16, 32>>),
    Rsa3072(Box<Crt<24, 48>>),
    Rsa4096(Box<Crt<32, 64>>),
}

/// A constant-time RSA decryptor for one secret key.
pub(super) struct RsaDecryptor {
    public: Key<PublicParts, UnspecifiedRole>,
    crt: CrtBySize,
}

// Secret numbers never show up in debug output.
impl fmt::Debug for RsaDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaDecryptor")
            .field("key", &self.public.fingerprint().to_hex())
            .finish_non_exhaustive()
    }
}

impl RsaDecryptor {
    /// The decryptor for an unencrypted RSA secret key, or `None` for
    /// other algorithms, protected keys and sizes it does not handle.
    pub(super) fn new(key: &Key<SecretParts, UnspecifiedRole>) -> Option<Self> {
        let (mpi::PublicKey::RSA { e, n }, SecretKeyMaterial::Unencrypted(secret)) =
            (key.mpis(), key.optional_secret()?)
        else {
            return None;
        };
        // As bytes, the form `pgp_split` gives (zeroized on drop).
        let numbers = secret.map(|s| match s {
            mpi::SecretKeyMaterial::RSA { d, p, q, u } => Some(RsaSecret {
                n: n.value().to_vec(),
                e: e.value().to_vec(),
                d: d.value().to_vec(),
                p: p.value().to_vec(),
                q: q.value().to_vec(),
                u: u.value().to_vec(),
            }),
            _ => None,
        })?;
        Self::from_numbers(
            &key.clone().take_secret().0.role_into_unspecified(),
            &numbers,
        )
    }

    /// The decryptor for an RSA key's secret numbers (taken out of the key
    /// file by [`super::pgp_split`], or from Sequoia by [`Self::new`]), for
    /// the public key they belong to (`None` if they do not, or for sizes
    /// it does not handle).
    pub(super) fn from_numbers(
        public: &Key<PublicParts, UnspecifiedRole>,
        secret: &RsaSecret,
    ) -> Option<Self> {
        let mpi::PublicKey::RSA { e, n } = public.mpis() else {
            return None;
        };
        if n.value() != secret.n || e.value() != secret.e {
            return None;
        }
        let parts = RsaParts {
            n: BigUint::from_bytes_be(&secret.n),
            e: BigUint::from_bytes_be(&secret.e),
            d: BigUint::from_bytes_be(&secret.d),
            p: BigUint::from_bytes_be(&secret.p),
            q: BigUint::from_bytes_be(&secret.q),
            u: BigUint::from_bytes_be(&secret.u),
        };
        let prime_bits = parts.p.bits().max(parts.q.bits());
        let crt = match prime_bits {
            0..=1024 => CrtBySize::Rsa2048(Box::new(Crt::new(&parts)?)),
            1025..=1536 => CrtBySize::Rsa3072(Box::new(Crt::new(&parts)?)),
            1537..=2048 => CrtBySize::Rsa4096(Box::new(Crt::new(&parts)?)),
            _ => return None,
        };
        Some(RsaDecryptor {
            public: public.clone(),
            crt,
        })
    }

    fn decrypt_block(&self, c: &[u8]) -> Option<Vec<u8>> {
        let mut em = match &self.crt {
            CrtBySize::Rsa2048(k) => k.private_op(c),
            CrtBySize::Rsa3072(k) => k.private_op(c),
            CrtBySize::Rsa4096(k) => k.private_op(c),
        }?;
        let out = unpad(&em);
        em.zeroize();
        out
    }
}

// Shared by reference: one decryptor per key serves every message.
impl Decryptor for &RsaDecryptor {
    fn public(&self) -> &Key<PublicParts, UnspecifiedRole> {
        &self.public
    }

    fn decrypt(
        &mut self,
        ciphertext: &Ciphertext,
        _plaintext_len: Option<usize>,
    ) -> openpgp::Result<SessionKey> {
        let Ciphertext::RSA { c } = ciphertext else {
            return Err(openpgp::Error::InvalidOperation("not an RSA ciphertext".into()).into());
        };
        match self.decrypt_block(c.value()) {
            Some(mut m) => {
                let key = SessionKey::from(&m[..]);
                m.zeroize();
                Ok(key)
            }
            None => Err(openpgp::Error::InvalidSessionKey("RSA decryption failed".into()).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::crypto::mpi::MPI;
    use openpgp::packet::key::Key4;
    use openpgp::types::Curve;

    fn rsa_key(bits: usize) -> Key<SecretParts, UnspecifiedRole> {
        Key::V4(Key4::generate_rsa(bits).unwrap())
    }

    fn encrypt(key: &Key<SecretParts, UnspecifiedRole>, msg: &[u8]) -> Ciphertext {
        key.parts_as_public()
            .encrypt(&SessionKey::from(msg))
            .unwrap()
    }

    #[test]
    fn decrypts_what_sequoia_encrypts() {
        for bits in [2048, 3072] {
            let key = rsa_key(bits);
            let ours = RsaDecryptor::new(&key).expect("supported size");
            let mut ours = &ours;
            let mut theirs = key.clone().into_keypair().unwrap();
            for len in [1usize, 19, 35, 100] {
                let msg: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(7) ^ 0x5a).collect();
                let ct = encrypt(&key, &msg);
                let a = ours.decrypt(&ct, None).unwrap();
                let b = theirs.decrypt(&ct, None).unwrap();
                assert_eq!(&a[..], &msg[..]);
                assert_eq!(&a[..], &b[..]);
                // Inside a rayon worker both halves run on one thread.
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .unwrap();
                let c = pool.install(|| (&*ours).decrypt(&ct, None).unwrap());
                assert_eq!(&c[..], &msg[..]);
            }
        }
    }

    #[test]
    fn refuses_tampered_and_out_of_range_ciphertexts() {
        let key = rsa_key(2048);
        let ours = RsaDecryptor::new(&key).unwrap();
        let mut ours = &ours;
        let Ciphertext::RSA { c } = encrypt(&key, b"0123456789abcdef") else {
            unreachable!()
        };
        let mut bad = c.value().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(ours
            .decrypt(&Ciphertext::RSA { c: MPI::new(&bad) }, None)
            .is_err());
        let n = match key.mpis() {
            mpi::PublicKey::RSA { n, .. } => n.value().to_vec(),
            _ => unreachable!(),
        };
        assert!(ours
            .decrypt(&Ciphertext::RSA { c: MPI::new(&n) }, None)
            .is_err());
        assert!(ours
            .decrypt(
                &Ciphertext::RSA {
                    c: MPI::new(&[0xff; 300])
                },
                None
            )
            .is_err());
        assert!(ours
            .decrypt(&Ciphertext::RSA { c: MPI::new(&[]) }, None)
            .is_err());
    }

    /// A fault in either half (here a flipped exponent bit) gives no
    /// output rather than a wrong one that would leak a prime.
    #[test]
    fn faults_are_caught() {
        let key = rsa_key(2048);
        let Ciphertext::RSA { c } = encrypt(&key, b"0123456789abcdef") else {
            unreachable!()
        };
        for half in [0, 1] {
            let CrtBySize::Rsa2048(mut crt) = RsaDecryptor::new(&key).unwrap().crt else {
                unreachable!()
            };
            assert!(crt.private_op(c.value()).is_some());
            if half == 0 {
                crt.d_p[0] ^= 1;
            } else {
                crt.d_q[3] ^= 1 << 7;
            }
            assert!(crt.private_op(c.value()).is_none());
        }
    }

    #[test]
    fn other_keys_are_not_taken() {
        let ecdh: Key<SecretParts, UnspecifiedRole> =
            Key::V4(Key4::generate_ecc(false, Curve::Cv25519).unwrap());
        assert!(RsaDecryptor::new(&ecdh).is_none());
    }

    #[test]
    fn padding() {
        let mut em = vec![0u8, 2];
        em.extend([0x11; 8]);
        em.push(0);
        em.extend(b"msg");
        assert_eq!(unpad(&em).as_deref(), Some(&b"msg"[..]));
        // Too little padding.
        let mut short = vec![0u8, 2];
        short.extend([0x11; 7]);
        short.push(0);
        short.extend(b"msgs");
        assert_eq!(unpad(&short), None);
        // Wrong block type, no separator.
        let mut wrong = em.clone();
        wrong[1] = 1;
        assert_eq!(unpad(&wrong), None);
        assert_eq!(unpad(&[0, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]), None);
        // Empty message is allowed by the padding (the caller rejects it).
        let mut empty = vec![0u8, 2];
        empty.extend([0x22; 9]);
        empty.push(0);
        assert_eq!(unpad(&empty).as_deref(), Some(&b""[..]));
    }
}
