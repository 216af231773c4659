//! Interrupt vectors and the 256-bit vector registers of the local APIC
//! (IRR, ISR, TMR: eight 32-bit words each).

use core::fmt;

/// An interrupt vector. Vectors 0–15 belong to exceptions: the APIC
/// refuses them as interrupts and records an illegal-vector error.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Vector(pub u8);

impl Vector {
    /// The lowest vector the APIC accepts as an interrupt.
    pub const FIRST_LEGAL: Self = Self(16);

    /// The raw vector number.
    pub const fn raw(self) -> u8 {
        self.0
    }

    /// Whether the APIC accepts this vector as an interrupt (16–255).
    pub const fn is_legal(self) -> bool {
        self.0 >= Self::FIRST_LEGAL.0
    }

    /// The priority class: bits 7:4, the unit TPR and PPR compare in.
    pub const fn priority_class(self) -> u8 {
        self.0 >> 4
    }
}

impl fmt::Debug for Vector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Vector({:#04x})", self.0)
    }
}

/// How an interrupt is signalled; level-triggered vectors are remembered
/// in the TMR so that their EOI can be reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TriggerMode {
    /// Edge-triggered (every IPI Linux sends, the timer, the error LVT).
    #[default]
    Edge,
    /// Level-triggered.
    Level,
}

/// One of the 256-bit registers (IRR, ISR, TMR): bit `v` of the set is
/// bit `v % 32` of 32-bit word `v / 32`, as the guest reads them.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct VectorSet {
    words: [u32; 8],
}

impl VectorSet {
    /// No vector.
    pub const EMPTY: Self = Self { words: [0; 8] };

    /// The word index and bit of `vector` (the index is below 8 for
    /// every `u8`).
    const fn position(vector: Vector) -> (usize, u32) {
        ((vector.0 >> 5) as usize, 1 << (vector.0 & 31))
    }

    /// Whether `vector` is in the set.
    pub fn contains(&self, vector: Vector) -> bool {
        let (index, bit) = Self::position(vector);
        self.words.get(index).is_some_and(|word| word & bit != 0)
    }

    /// Adds `vector`; true if it was not there before.
    pub fn insert(&mut self, vector: Vector) -> bool {
        let (index, bit) = Self::position(vector);
        match self.words.get_mut(index) {
            Some(word) => {
                let added = *word & bit == 0;
                *word |= bit;
                added
            }
            None => false,
        }
    }

    /// Removes `vector`; true if it was there.
    pub fn remove(&mut self, vector: Vector) -> bool {
        let (index, bit) = Self::position(vector);
        match self.words.get_mut(index) {
            Some(word) => {
                let removed = *word & bit != 0;
                *word &= !bit;
                removed
            }
            None => false,
        }
    }

    /// The highest vector in the set: the one with the highest priority.
    pub fn highest(&self) -> Option<Vector> {
        (0u8..8).rev().find_map(|index| {
            let word = self.word(usize::from(index));
            (word != 0).then(|| Vector(index * 32 + (31 - word.leading_zeros()) as u8))
        })
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&word| word == 0)
    }

    /// Word `index` (0–7) as the guest reads it; 0 beyond the register.
    pub fn word(&self, index: usize) -> u32 {
        self.words.get(index).copied().unwrap_or(0)
    }

    /// The vectors in the set, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = Vector> + '_ {
        (0..=u8::MAX)
            .map(Vector)
            .filter(move |&vector| self.contains(vector))
    }
}

impl fmt::Debug for VectorSet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_set()
            .entries(self.iter().map(|vector| vector.0))
            .finish()
    }
}
