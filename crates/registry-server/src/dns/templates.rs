//! Encoded answers kept per question, so a hot name costs a copy instead of building and
//! encoding its records on every query.
//!
//! An answer is kept as a few encodings of the same records, each rotated one place from
//! the last over a random order: every instance leads the answer equally often, and each
//! query gets one picked at random. What a query changes in a kept answer is its id, its
//! RD bit and the question's letters (a resolver may check that its mix of capitals comes
//! back, as in DNS 0x20): the question is kept exactly as long as any spelling of the
//! name, so those bytes are copied in place. Kept answers are dropped as soon as the
//! instances change (their revision moves on).

use hickory_proto::op::{Message, Query};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Most questions kept at once: the names asked often are few, and a flood of
/// different names must not grow memory.
const MAX_KEPT: usize = 4096;
/// Most encodings of one answer.
const MAX_VARIANTS: usize = 16;
/// Offset of the question in a message: right after the header.
const QUESTION: usize = 12;
/// The RD bit, in the third byte of the header.
const RECURSION_DESIRED: u8 = 0x01;

/// One question's answer, encoded.
struct Kept {
    variants: Box<[Box<[u8]>]>,
}

/// Answers by question ([`Key`]), all made at one revision of the instances.
type ByQuestion = HashMap<Box<[u8]>, Arc<Kept>>;

/// Kept answers, by question, for one revision of the instances.
#[derive(Default)]
pub(super) struct Templates {
    kept: RwLock<(u64, ByQuestion)>,
}

/// What a question is kept under: its name in wire form, in lower case, then its type
/// and whether it came with EDNS (the answer then carries EDNS too).
pub(super) struct Key {
    bytes: [u8; 260],
    len: usize,
    name_len: usize,
}

impl Key {
    /// The key of the question at the start of `packet`'s question section, if it is
    /// written plainly (no compression) as `query` reads.
    pub(super) fn of(packet: &[u8], query: &Query, edns: bool) -> Option<Key> {
        let name_len = query.name().iter().map(|l| l.len() + 1).sum::<usize>() + 1;
        if name_len > 255 {
            return None;
        }
        let name = packet.get(QUESTION..QUESTION + name_len)?;
        let mut key = Key {
            bytes: [0; 260],
            len: name_len + 3,
            name_len,
        };
        for (to, from) in key.bytes.iter_mut().zip(name) {
            *to = from.to_ascii_lowercase();
        }
        let qtype = u16::from(query.query_type()).to_be_bytes();
        key.bytes[name_len..name_len + 3].copy_from_slice(&[qtype[0], qtype[1], u8::from(edns)]);
        Some(key)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Templates {
    /// The kept answer to `key` as of `revision`, made for the query `packet` (its id,
    /// RD bit and question), if it is kept and fits `limit` bytes.
    pub(super) fn answer(
        &self,
        revision: u64,
        key: &Key,
        packet: &[u8],
        limit: usize,
    ) -> Option<Vec<u8>> {
        let kept = {
            let kept = self.kept.read().unwrap_or_else(|p| p.into_inner());
            if kept.0 != revision {
                return None;
            }
            kept.1.get(key.as_bytes())?.clone()
        };
        let pick = rand::thread_rng().gen_range(0..kept.variants.len());
        let mut answer = kept.variants[pick].to_vec();
        if answer.len() > limit {
            return None;
        }
        let question = QUESTION..QUESTION + key.name_len;
        answer[..2].copy_from_slice(packet.get(..2)?);
        answer[2] = (answer[2] & !RECURSION_DESIRED) | (packet[2] & RECURSION_DESIRED);
        answer
            .get_mut(question.clone())?
            .copy_from_slice(packet.get(question)?);
        Some(answer)
    }

    /// Keeps `response` (whole, as answered) under `key` as of `revision`: encoded with
    /// its answers in several orders.
    pub(super) fn keep(&self, revision: u64, key: &Key, mut response: Message) {
        let mut answers = response.take_answers();
        let variants: Option<Box<[Box<[u8]>]>> = (0..answers.len().min(MAX_VARIANTS))
            .map(|_| {
                *response.answers_mut() = answers.clone();
                answers.rotate_left(1);
                response.to_vec().ok().map(Vec::into_boxed_slice)
            })
            .collect();
        let Some(variants) = variants.filter(|v| !v.is_empty()) else {
            return;
        };
        let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
        if revision > kept.0 {
            *kept = (revision, HashMap::new());
        }
        // An answer made before the latest change is never kept.
        if revision == kept.0 && kept.1.len() < MAX_KEPT {
            kept.1
                .insert(key.as_bytes().into(), Arc::new(Kept { variants }));
        }
    }
}
