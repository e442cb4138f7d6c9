//! The classic BPF program: a set of CIDR rules assembled into a socket filter that drops the
//! packets of refused sources on a TCP listener.
//!
//! Pure: it turns [`Rules`] into instructions and owns no socket. The program judges the source
//! address the way `policy::network` does: the IP version comes from the first byte of the
//! network header (a dual-stack listener sees IPv4 packets too), an IPv4-mapped IPv6 source is
//! judged by the IPv4 rules, and IPv4 rules never match a real IPv6 source or the other way
//! round. Addresses are read with `BPF_ABS` loads at `SKF_NET_OFF` offsets (the socket filter of
//! a TCP socket sees the packet from the TCP header on).
//!
//! ```text
//!   version 4 ─► A = src ─┐
//!   version 6 ─► mapped? ─┴► X = A: deny? → drop; allow list compiled and not in it? → drop
//!                  └ no ──► same with the IPv6 rules, read word by word
//!   otherwise, and no rule hit: accept
//! ```
//!
//! Conditional jumps reach 255 instructions at most, so long rule lists are cut into chunks that
//! each end in a long jump (`ja`) to the verdict. The kernel takes at most [`MAX_INSNS`]
//! instructions: [`compile`] keeps the exempt list whole (or builds nothing), the allow list whole
//! or not at all (a partial allow list would drop admitted sources) and keeps as many deny rules
//! as fit, in the order given; what is left
//! out is refused by the user-space gate, as before.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The longest program the kernel accepts (`BPF_MAXINSNS`).
pub(crate) const MAX_INSNS: usize = 4096;

/// `SKF_NET_OFF`: loads at this offset and above read the network (IP) header.
const SKF_NET_OFF: u32 = 0xfff0_0000;

/// `BPF_LD | BPF_W | BPF_ABS`.
pub(crate) const LD_W_ABS: u16 = 0x20;
/// `BPF_LD | BPF_B | BPF_ABS`.
pub(crate) const LD_B_ABS: u16 = 0x30;
/// `BPF_ALU | BPF_AND | BPF_K`.
pub(crate) const AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`.
pub(crate) const JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub(crate) const JEQ_K: u16 = 0x15;
/// `BPF_RET | BPF_K`.
pub(crate) const RET_K: u16 = 0x06;
/// `BPF_MISC | BPF_TAX`.
pub(crate) const TAX: u16 = 0x07;
/// `BPF_MISC | BPF_TXA`.
pub(crate) const TXA: u16 = 0x87;

/// Return value that keeps the whole packet.
const KEEP: u32 = u32::MAX;

/// Instructions a chunk of comparisons may span before its long jump (below 255, with room for
/// the largest IPv6 comparison).
const CHUNK: usize = 200;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    /// Opcode.
    pub(crate) code: u16,
    /// Jump offset if true.
    pub(crate) jt: u8,
    /// Jump offset if false.
    pub(crate) jf: u8,
    /// Constant operand.
    pub(crate) k: u32,
}

/// What a listener's filter refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rules {
    /// Sources always accepted, checked first: the trusted balancers and reverse proxies, which
    /// admission lets through as relays whatever the network rules and bans say.
    pub(crate) exempt: Vec<IpNet>,
    /// Sources dropped, most important first (the tail is left out if the program is too long).
    pub(crate) deny: Vec<IpNet>,
    /// When set, sources outside these networks are dropped too (an empty list drops every
    /// source). `None`: no allow check in the kernel.
    pub(crate) allow: Option<Vec<IpNet>>,
}

/// A compiled program and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Program {
    /// The instructions.
    pub(crate) insns: Vec<Insn>,
    /// Deny networks compiled in (after merging).
    pub(crate) deny_compiled: usize,
    /// Deny networks left to user space because the program would be too long.
    pub(crate) deny_left_out: usize,
    /// Whether the allow list is checked in the kernel.
    pub(crate) allow_compiled: bool,
}

/// Why no program could be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProgramError {
    /// Even the smallest program (no rules) did not assemble; a bug, reported instead of a panic.
    #[error("the socket filter did not assemble")]
    Assembly,
}

/// Compiles `rules` into at most `max` instructions (see the module docs for what is left out
/// when they do not fit).
pub(crate) fn compile(rules: &Rules, max: usize) -> Result<Program, ProgramError> {
    let max = max.min(MAX_INSNS);
    let allow = rules.allow.as_ref().map(|a| merged(a));
    let allow = match allow {
        // An allow list holding 0.0.0.0/0 and ::/0 admits everyone: nothing to check.
        Some(a) if covers_all(&a) => None,
        other => other,
    };
    let exempt = merged(&rules.exempt);
    let mut deny = merged_in_order(&rules.deny);
    let total = deny.len();
    // Every network costs at least one instruction: more than `max` never fit.
    deny.truncate(max);
    // Whole, or with the allow list left out, or with fewer deny rules: the first that fits.
    for allow in [allow.clone(), None] {
        let Some(insns) = assemble(&exempt, &[], allow.as_deref()).filter(|p| p.len() <= max)
        else {
            continue;
        };
        let fits = |n: usize| {
            let deny = deny.get(..n).unwrap_or(&deny);
            assemble(&exempt, deny, allow.as_deref()).filter(|p| p.len() <= max)
        };
        let (kept, insns) = match fits(deny.len()) {
            Some(p) => (deny.len(), p),
            None => {
                // Binary search for the longest prefix of `deny` that fits.
                let (mut lo, mut hi, mut best) = (0usize, deny.len(), insns);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    match fits(mid) {
                        Some(p) => {
                            lo = mid;
                            best = p;
                        }
                        None => hi = mid,
                    }
                }
                (lo, best)
            }
        };
        return Ok(Program {
            insns,
            deny_compiled: kept,
            deny_left_out: total - kept,
            allow_compiled: allow.is_some(),
        });
    }
    Err(ProgramError::Assembly)
}

/// `nets` merged (overlapping and adjacent networks joined), sorted.
fn merged(nets: &[IpNet]) -> Vec<IpNet> {
    IpNet::aggregate(&nets.iter().map(IpNet::trunc).collect())
}

/// `nets` without the networks an earlier one already covers, in the given order (the order is
/// the priority when the program is too long).
fn merged_in_order(nets: &[IpNet]) -> Vec<IpNet> {
    let all = merged(nets);
    if all.len() == nets.len() {
        // Nothing merged: keep the caller's priority order.
        let mut out: Vec<IpNet> = nets.iter().map(IpNet::trunc).collect();
        out.dedup();
        return out;
    }
    // Merging changed the set of networks; each merged network takes the priority of the first
    // input it covers.
    let mut ranked: Vec<(usize, IpNet)> = all
        .into_iter()
        .map(|m| {
            let rank = nets
                .iter()
                .position(|n| m.contains(n))
                .unwrap_or(usize::MAX);
            (rank, m)
        })
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, n)| n).collect()
}

fn covers_all(nets: &[IpNet]) -> bool {
    let v4 = nets
        .iter()
        .any(|n| matches!(n, IpNet::V4(n) if n.prefix_len() == 0));
    let v6 = nets
        .iter()
        .any(|n| matches!(n, IpNet::V6(n) if n.prefix_len() == 0));
    v4 && v6
}

/// A jump target, bound to an instruction index later.
#[derive(Debug, Clone, Copy)]
struct Label(usize);

/// Where a jump goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The next instruction.
    Next,
    /// A label.
    To(Label),
}

/// An instruction whose jumps are still labels.
#[derive(Debug, Clone, Copy)]
struct Item {
    code: u16,
    jt: Target,
    jf: Target,
    k: u32,
    /// For `ja`: the target (its offset goes into `k`).
    far: Option<Label>,
}

/// A tiny assembler: instructions with symbolic forward jumps.
#[derive(Debug, Default)]
struct Asm {
    items: Vec<Item>,
    labels: Vec<Option<usize>>,
}

// === impl Asm ===

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn bind(&mut self, l: Label) {
        if let Some(slot) = self.labels.get_mut(l.0) {
            *slot = Some(self.items.len());
        }
    }

    fn op(&mut self, code: u16, k: u32) {
        self.items.push(Item {
            code,
            jt: Target::Next,
            jf: Target::Next,
            k,
            far: None,
        });
    }

    /// `if A == k goto hit` (near).
    fn jeq(&mut self, k: u32, hit: Label) {
        self.items.push(Item {
            code: JEQ_K,
            jt: Target::To(hit),
            jf: Target::Next,
            k,
            far: None,
        });
    }

    /// `if A != k goto miss` (near).
    fn jne(&mut self, k: u32, miss: Label) {
        self.items.push(Item {
            code: JEQ_K,
            jt: Target::Next,
            jf: Target::To(miss),
            k,
            far: None,
        });
    }

    /// `goto to` (any distance).
    fn ja(&mut self, to: Label) {
        self.items.push(Item {
            code: JA,
            jt: Target::Next,
            jf: Target::Next,
            k: 0,
            far: Some(to),
        });
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    /// Resolves the labels; `None` if a label is unbound or a near jump is out of reach.
    fn finish(self) -> Option<Vec<Insn>> {
        let at = |l: Label| self.labels.get(l.0).copied().flatten();
        let near = |pc: usize, t: Target| -> Option<u8> {
            match t {
                Target::Next => Some(0),
                Target::To(l) => u8::try_from(at(l)?.checked_sub(pc + 1)?).ok(),
            }
        };
        let mut out = Vec::with_capacity(self.items.len());
        for (pc, item) in self.items.iter().enumerate() {
            let k = match item.far {
                Some(l) => u32::try_from(at(l)?.checked_sub(pc + 1)?).ok()?,
                None => item.k,
            };
            out.push(Insn {
                code: item.code,
                jt: near(pc, item.jt)?,
                jf: near(pc, item.jf)?,
                k,
            });
        }
        Some(out)
    }
}

/// A run of comparisons that jump to a near trampoline, which jumps on to the verdict.
struct Chunk {
    hit: Label,
    start: usize,
    used: bool,
}

// === impl Chunk ===

impl Chunk {
    fn open(a: &mut Asm) -> Chunk {
        Chunk {
            hit: a.label(),
            start: a.len(),
            used: false,
        }
    }

    /// Closes the chunk (`goto verdict` for its hits) when it is long, or when `force`.
    fn close_if_long(self, a: &mut Asm, verdict: Label, force: bool) -> Chunk {
        if !force && a.len() - self.start < CHUNK {
            return self;
        }
        if self.used {
            let past = a.label();
            a.ja(past);
            a.bind(self.hit);
            a.ja(verdict);
            a.bind(past);
        }
        Chunk::open(a)
    }
}

/// Code that jumps to `verdict` when X (the IPv4 source) is in `nets`, else falls through.
fn member_v4(a: &mut Asm, nets: &[Ipv4Net], verdict: Label) {
    let mut nets: Vec<Ipv4Net> = nets.to_vec();
    nets.sort_by_key(|n| (n.prefix_len(), n.network()));
    let mut chunk = Chunk::open(a);
    let mut masked_at: Option<u8> = None;
    for net in nets {
        let len = net.prefix_len();
        if len == 0 {
            a.ja(verdict);
            break;
        }
        if masked_at != Some(len) {
            a.op(TXA, 0);
            if len < 32 {
                a.op(AND_K, u32::from(net.netmask()));
            }
            masked_at = Some(len);
        }
        a.jeq(u32::from(net.network()), chunk.hit);
        chunk.used = true;
        chunk = chunk.close_if_long(a, verdict, false);
    }
    chunk.close_if_long(a, verdict, true);
}

/// Code that jumps to `verdict` when the IPv6 source is in `nets`, else falls through.
fn member_v6(a: &mut Asm, nets: &[Ipv6Net], verdict: Label) {
    let mut chunk = Chunk::open(a);
    for net in nets {
        let len = u32::from(net.prefix_len());
        if len == 0 {
            a.ja(verdict);
            break;
        }
        let bits = u128::from(net.network());
        let words = len.div_ceil(32);
        let next = a.label();
        for i in 0..words {
            let word = u32::try_from((bits >> (96 - 32 * i)) & 0xffff_ffff).unwrap_or(0);
            a.op(LD_W_ABS, SKF_NET_OFF + 8 + 4 * i);
            let in_word = (len - 32 * i).min(32);
            if in_word < 32 {
                a.op(AND_K, mask_of(in_word));
            }
            if i + 1 < words {
                a.jne(word & mask_of(in_word), next);
            } else {
                a.jeq(word & mask_of(in_word), chunk.hit);
            }
        }
        a.bind(next);
        chunk.used = true;
        chunk = chunk.close_if_long(a, verdict, false);
    }
    chunk.close_if_long(a, verdict, true);
}

fn mask_of(bits: u32) -> u32 {
    u32::MAX.checked_shl(32 - bits.min(32)).unwrap_or(0)
}

/// The checks of one family: exempt, deny, then the allow list if compiled, then accept.
fn body<N: Copy>(
    a: &mut Asm,
    exempt: &[N],
    deny: &[N],
    allow: Option<&[N]>,
    member: fn(&mut Asm, &[N], Label),
    (accept, drop): (Label, Label),
) {
    member(a, exempt, accept);
    member(a, deny, drop);
    match allow {
        Some(allow) => {
            member(a, allow, accept);
            a.ja(drop);
        }
        None => a.ja(accept),
    }
}

fn split(nets: &[IpNet]) -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for n in nets {
        match n {
            IpNet::V4(n) => v4.push(*n),
            IpNet::V6(n) => v6.push(*n),
        }
    }
    (v4, v6)
}

/// The whole program, or `None` if it does not assemble (a near jump out of reach).
fn assemble(exempt: &[IpNet], deny: &[IpNet], allow: Option<&[IpNet]>) -> Option<Vec<Insn>> {
    let (exempt4, exempt6) = split(exempt);
    let (deny4, deny6) = split(deny);
    let (allow4, allow6) = match allow {
        Some(a) => {
            let (v4, v6) = split(a);
            (Some(v4), Some(v6))
        }
        None => (None, None),
    };
    let mut a = Asm::default();
    let (accept, drop) = (a.label(), a.label());
    let (v4, v4_body, v6_real) = (a.label(), a.label(), a.label());
    // The version nibble of the network header.
    a.op(LD_B_ABS, SKF_NET_OFF);
    a.op(AND_K, 0xf0);
    let not4 = a.label();
    a.jne(0x40, not4);
    a.ja(v4);
    a.bind(not4);
    let is6 = a.label();
    a.jeq(0x60, is6);
    a.ja(accept);
    a.bind(is6);
    // IPv4-mapped (::ffff:a.b.c.d) sources are judged by the IPv4 rules.
    for (offset, word) in [(8, 0), (12, 0), (16, 0xffff)] {
        a.op(LD_W_ABS, SKF_NET_OFF + offset);
        a.jne(word, v6_real);
    }
    a.op(LD_W_ABS, SKF_NET_OFF + 20);
    a.ja(v4_body);
    a.bind(v6_real);
    body(
        &mut a,
        &exempt6,
        &deny6,
        allow6.as_deref(),
        member_v6,
        (accept, drop),
    );
    a.bind(v4);
    a.op(LD_W_ABS, SKF_NET_OFF + 12);
    a.bind(v4_body);
    a.op(TAX, 0);
    body(
        &mut a,
        &exempt4,
        &deny4,
        allow4.as_deref(),
        member_v4,
        (accept, drop),
    );
    a.bind(accept);
    a.op(RET_K, KEEP);
    a.bind(drop);
    a.op(RET_K, 0);
    a.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn empty_rules_accept_everything_in_a_short_program() {
        let p = compile(&Rules::default(), MAX_INSNS).unwrap();
        assert!(p.insns.len() < 30, "{}", p.insns.len());
        assert_eq!(p.insns.last().unwrap().code, RET_K);
        assert!(!p.allow_compiled);
    }

    #[test]
    fn an_allow_list_of_everyone_is_not_compiled() {
        let rules = Rules {
            allow: Some(vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]),
            ..Rules::default()
        };
        assert!(!compile(&rules, MAX_INSNS).unwrap().allow_compiled);
    }

    #[test]
    fn too_many_denies_keep_the_first_ones_and_fit() {
        let deny: Vec<IpNet> = (0..10_000u32)
            .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + 2 * i), 32).unwrap()))
            .collect();
        let p = compile(
            &Rules {
                deny: deny.clone(),
                ..Rules::default()
            },
            MAX_INSNS,
        )
        .unwrap();
        assert!(p.insns.len() <= MAX_INSNS);
        assert!(p.deny_compiled > 3_900, "{p:?}");
        assert_eq!(p.deny_compiled + p.deny_left_out, 10_000);
    }

    #[test]
    fn merging_keeps_priority_order() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        let got = merged_in_order(&[n("10.0.0.1/32"), n("192.0.2.0/25"), n("192.0.2.128/25")]);
        assert_eq!(got, vec![n("10.0.0.1/32"), n("192.0.2.0/24")]);
    }
}
