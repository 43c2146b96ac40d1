use std::fmt;
use std::ops::Index;

/// List containing max 31 items.
// Fjord: the items live in a `Vec` (at most 31), not in an array of 31 `Option`s: an
// array is as large as 31 items however few it holds, and every move of a list (into a
// `Box`, an `Rtcp`, the feedback queue, a merge) copied all of it; a list of SDES chunks
// is ~31 KB, and a sender report's SDES cost ~80 k instructions of copying.
#[derive(Clone, PartialEq, Eq)]
pub struct ReportList<T>(Vec<T>);

/// The most items a list holds (RTCP's 5-bit count).
const MAX: usize = 31;

impl<T> ReportList<T> {
    pub(crate) fn new() -> Self {
        ReportList::default()
    }

    /// Number of elements in the list.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn push(&mut self, v: T) {
        assert!(self.0.len() < MAX, "a ReportList holds at most {MAX} items");
        self.0.push(v);
    }

    /// Get element at position.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.0.get(i)
    }

    /// Iterator over the elements in the list.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.into_iter()
    }

    /// Tells if the list contains zero elements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn lists_from_iter(iterator: impl IntoIterator<Item = T>) -> Vec<Self> {
        let mut result = vec![];
        let mut current = Self::default();

        for (i, item) in iterator.into_iter().enumerate() {
            if i % MAX == 0 && i != 0 {
                result.push(current);
                current = Self::default();
            }

            current.push(item);
        }

        if !current.is_empty() {
            result.push(current);
        }

        result
    }

    pub(crate) fn is_full(&self) -> bool {
        self.0.len() == MAX
    }
}

impl<T: private::WordSized> ReportList<T> {
    pub(crate) fn append_all_possible(&mut self, other: &mut Self, mut words_left: usize) -> usize {
        // Max number we can move.
        let max = (MAX - self.len()).min(other.len());

        // The number of items from the front of other that fit.
        let mut i = 0;
        while i < max {
            let item_size = other.0[i].word_size();

            // can we fit one more item?
            if words_left < item_size {
                break;
            }

            // reduce space left.
            words_left -= item_size;

            i += 1;
        }

        // move them, the rest of other shifting down.
        self.0.extend(other.0.drain(..i));

        // return number of appended items.
        i
    }
}

pub(crate) mod private {
    pub trait WordSized {
        fn word_size(&self) -> usize;
    }
}

impl<T> Index<usize> for ReportList<T> {
    type Output = T;

    fn index(&self, index: usize) -> &Self::Output {
        &self.0[index]
    }
}

impl<T> Default for ReportList<T> {
    fn default() -> Self {
        ReportList(Vec::new())
    }
}

impl<'a, T> IntoIterator for &'a ReportList<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        Iter(self.0.iter())
    }
}

impl<T> IntoIterator for ReportList<T> {
    type Item = T;
    type IntoIter = IterOwned<T>;

    fn into_iter(self) -> Self::IntoIter {
        IterOwned(self.0.into_iter())
    }
}

pub struct Iter<'a, T>(std::slice::Iter<'a, T>);

pub struct IterOwned<T>(std::vec::IntoIter<T>);

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl<T> Iterator for IterOwned<T> {
    type Item = T;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl<T> From<T> for ReportList<T> {
    fn from(t: T) -> Self {
        let mut l = ReportList::default();
        l.push(t);
        l
    }
}

impl<T: fmt::Debug> fmt::Debug for ReportList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[")?;
        let len = self.len();
        for (i, s) in self.0.iter().enumerate() {
            if i == len - 1 {
                write!(f, "{s:?}")?;
            } else {
                write!(f, "{s:?},")?;
            }
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod test {
    use super::ReportList;

    #[test]
    fn test_lists_from_iter() {
        let lists = ReportList::lists_from_iter(0..66);

        assert_eq!(lists.len(), 3);
        assert_eq!(lists[0].len(), 31);
        assert_eq!(lists[1].len(), 31);
        assert_eq!(lists[2].len(), 4);
    }

    // Fjord: an item of a given size in words.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Words(usize);

    impl super::private::WordSized for Words {
        fn word_size(&self) -> usize {
            self.0
        }
    }

    // Fjord: a merge moves what fits from the front of the other list, in order, and
    // the rest of that list shifts down.
    #[test]
    fn append_all_possible_moves_what_fits_and_shifts_the_rest() {
        let words = |l: &ReportList<Words>| l.iter().map(|w| w.0).collect::<Vec<_>>();
        let mut a = ReportList::lists_from_iter([Words(1), Words(1)]).remove(0);
        let mut b = ReportList::lists_from_iter([Words(2), Words(3), Words(1)]).remove(0);
        // 5 words left: 2 and 3 fit, 1 does not.
        assert_eq!(a.append_all_possible(&mut b, 5), 2);
        assert_eq!(words(&a), [1, 1, 2, 3]);
        assert_eq!(words(&b), [1]);
        assert_eq!(b[0], Words(1));
        // A full list takes nothing.
        let mut full = ReportList::lists_from_iter([Words(1); 31]).remove(0);
        assert!(full.is_full());
        assert_eq!(full.append_all_possible(&mut b, 100), 0);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn test_max_length_iter() {
        let list = {
            let mut list = ReportList::new();
            for i in 1..=31 {
                list.push(i);
            }

            list
        };
        let sum: u64 = list.iter().sum();

        assert_eq!(sum, 496);
    }

    #[test]
    fn test_max_length_into_iter() {
        let list = {
            let mut list = ReportList::new();
            for i in 1..=31 {
                list.push(i);
            }

            list
        };
        let sum: u64 = list.into_iter().sum();

        assert_eq!(sum, 496);
    }
}
