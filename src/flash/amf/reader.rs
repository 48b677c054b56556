//! A cursor over one AMF message: its bytes, its reference tables and the limits that keep
//! hostile input from recursing without end or allocating without bound.
//!
//! AMF references point back into tables that live as long as the message: AMF0 numbers
//! its complex values, AMF3 its strings, complex values and traits. A message may
//! reference one value many times, and every reference is decoded into its own copy, so a
//! few bytes can ask for a lot of memory; the reader charges every value it builds, copy
//! or not, to a budget and fails the message once the budget is spent.

use super::amf3::Traits;
use super::value::Value;
use super::AmfError;

/// Deepest nesting of objects and arrays a message may have.
pub const MAX_DEPTH: usize = 64;

/// The memory, in bytes (approximately), that decoding one message may spend on values,
/// reference copies and reference tables together.
pub const MAX_DECODED_BYTES: usize = 128 << 20;

/// What one value costs before its text, bytes or children.
const VALUE_COST: usize = std::mem::size_of::<Value>();

/// Collections are preallocated at most this far; beyond it they grow as elements come.
const MAX_PREALLOCATION: usize = 1024;

/// Which complex-value reference table.
#[derive(Debug, Clone, Copy)]
pub(super) enum Table {
    Amf0Objects,
    Amf3Objects,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Amf0Objects => "AMF0 object",
            Table::Amf3Objects => "AMF3 object",
        }
    }
}

/// An entry of a complex-value reference table.
enum Slot {
    /// Registered when the value began; a reference to it now would be a cycle.
    InProgress,
    Complete {
        value: Value,
        cost: usize,
    },
}

/// The complex values of a message, by reference index.
#[derive(Default)]
pub(super) struct ObjectTable {
    slots: Vec<Slot>,
}

/// Where a complex value started: its table index and the budget mark for its cost.
pub(super) struct Registration {
    index: usize,
    mark: usize,
}

/// The bytes of one AMF message and the state decoding it accumulates.
///
/// Decode every value of a message through the same reader (AMF0 and AMF3 alike): later
/// values may reference earlier ones. After an error the reader is spent.
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    depth: usize,
    /// The memory the decoded values themselves hold, copies included.
    value_cost: usize,
    /// `value_cost` plus the copies held by the reference tables.
    spent: usize,
    pub(super) amf0_objects: ObjectTable,
    pub(super) amf3_strings: Vec<String>,
    pub(super) amf3_objects: ObjectTable,
    pub(super) amf3_traits: Vec<Traits>,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            position: 0,
            depth: 0,
            value_cost: 0,
            spent: 0,
            amf0_objects: ObjectTable::default(),
            amf3_strings: Vec::new(),
            amf3_objects: ObjectTable::default(),
            amf3_traits: Vec::new(),
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.position
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Everything not yet read, without consuming it.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.position..]
    }

    pub(super) fn take(&mut self, len: usize) -> Result<&'a [u8], AmfError> {
        if len > self.remaining() {
            return Err(AmfError::Truncated {
                at: self.position,
                needed: len,
                remaining: self.remaining(),
            });
        }
        let taken = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AmfError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn peek_u8(&self) -> Option<u8> {
        self.rest().first().copied()
    }

    pub(super) fn u16(&mut self) -> Result<u16, AmfError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(super) fn i16(&mut self) -> Result<i16, AmfError> {
        self.array().map(i16::from_be_bytes)
    }

    pub(super) fn u32(&mut self) -> Result<u32, AmfError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(super) fn i32(&mut self) -> Result<i32, AmfError> {
        self.array().map(i32::from_be_bytes)
    }

    pub(super) fn f64(&mut self) -> Result<f64, AmfError> {
        self.array().map(f64::from_be_bytes)
    }

    /// `len` bytes of UTF-8, charged to the budget.
    pub(super) fn utf8(&mut self, len: usize) -> Result<String, AmfError> {
        let at = self.position;
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| AmfError::InvalidUtf8 { at })?;
        self.charge(len)?;
        Ok(text.to_owned())
    }

    /// `len` raw bytes, charged to the budget.
    pub(super) fn bytes(&mut self, len: usize) -> Result<Vec<u8>, AmfError> {
        let bytes = self.take(len)?.to_vec();
        self.charge(len)?;
        Ok(bytes)
    }

    /// A count announced by the input, checked against what is left: each element takes
    /// at least `min_element_len` bytes, so a count the rest cannot hold is a lie.
    pub(super) fn count(
        &mut self,
        count: usize,
        min_element_len: usize,
    ) -> Result<usize, AmfError> {
        let remaining = self.remaining();
        if count.saturating_mul(min_element_len) > remaining {
            return Err(AmfError::CountExceedsInput {
                at: self.position,
                count,
                remaining,
            });
        }
        Ok(count)
    }

    /// Enters one level of nesting; pair with [`Reader::leave`].
    pub(super) fn enter(&mut self) -> Result<(), AmfError> {
        if self.depth >= MAX_DEPTH {
            return Err(AmfError::TooDeep {
                at: self.position,
                limit: MAX_DEPTH,
            });
        }
        self.depth += 1;
        Ok(())
    }

    pub(super) fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Restores the nesting depth a top-level decode started at, whatever happened inside.
    pub(super) fn depth(&self) -> usize {
        self.depth
    }

    pub(super) fn reset_depth(&mut self, depth: usize) {
        self.depth = depth;
    }

    pub(super) fn value_cost(&self) -> usize {
        self.value_cost
    }

    /// Charges memory that becomes part of a decoded value.
    pub(super) fn charge(&mut self, cost: usize) -> Result<(), AmfError> {
        self.value_cost = self.value_cost.saturating_add(cost);
        self.spend(cost)
    }

    /// Charges one value node.
    pub(super) fn charge_value(&mut self) -> Result<(), AmfError> {
        self.charge(VALUE_COST)
    }

    /// Charges memory a reference table holds (not part of any decoded value).
    pub(super) fn spend(&mut self, cost: usize) -> Result<(), AmfError> {
        self.spent = self.spent.saturating_add(cost);
        if self.spent > MAX_DECODED_BYTES {
            return Err(AmfError::TooLarge {
                at: self.position,
                limit: MAX_DECODED_BYTES,
            });
        }
        Ok(())
    }

    fn table(&mut self, table: Table) -> &mut ObjectTable {
        match table {
            Table::Amf0Objects => &mut self.amf0_objects,
            Table::Amf3Objects => &mut self.amf3_objects,
        }
    }

    /// Registers a complex value as it begins, so that values nested in it number after
    /// it, as both AMF specs require.
    pub(super) fn register(&mut self, table: Table) -> Registration {
        let mark = self.value_cost;
        let slots = &mut self.table(table).slots;
        slots.push(Slot::InProgress);
        Registration {
            index: slots.len() - 1,
            mark,
        }
    }

    /// Stores a finished complex value under the index it registered.
    pub(super) fn complete(
        &mut self,
        table: Table,
        registration: Registration,
        value: &Value,
    ) -> Result<(), AmfError> {
        // The value node itself was charged just before it registered.
        let cost = self.value_cost - registration.mark + VALUE_COST;
        self.spend(cost)?;
        self.table(table).slots[registration.index] = Slot::Complete {
            value: value.clone(),
            cost,
        };
        Ok(())
    }

    /// A copy of the complex value at `index`, charged to the budget before it is made.
    /// `at` is where the reference starts, for errors.
    pub(super) fn resolve(
        &mut self,
        table: Table,
        index: usize,
        at: usize,
    ) -> Result<Value, AmfError> {
        let slots = &self.table(table).slots;
        let known = slots.len();
        let cost = match slots.get(index) {
            None => {
                return Err(AmfError::BadReference {
                    at,
                    table: table.name(),
                    index,
                    known,
                })
            }
            Some(Slot::InProgress) => return Err(AmfError::CyclicReference { at, index }),
            Some(Slot::Complete { cost, .. }) => *cost,
        };
        self.charge(cost)?;
        match &self.table(table).slots[index] {
            Slot::Complete { value, .. } => Ok(value.clone()),
            Slot::InProgress => Err(AmfError::CyclicReference { at, index }),
        }
    }

    /// How many elements to preallocate for a count that passed [`Reader::count`].
    pub(super) fn capacity(count: usize) -> usize {
        count.min(MAX_PREALLOCATION)
    }
}
