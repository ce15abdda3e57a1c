use std::fmt;
use std::ops::Index;

/// List containing max 31 items.
///
/// Its items are on the heap (Jinke's patch). It was `[Option<T>; 31]` in place: an SDES
/// report (a list of 31 chunks of 31 values each) was 31 KB, cleared, built and moved for every
/// sender report, and every `Rtcp` as big as its biggest list. Now an empty list allocates
/// nothing and a list costs what it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct ReportList<T>(Vec<T>);

/// The most items an RTCP count field (5 bits) can say.
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
        assert!(!self.is_full(), "a ReportList holds at most {MAX} items");
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

        for item in iterator {
            if current.is_full() {
                result.push(std::mem::take(&mut current));
            }
            current.push(item);
        }

        if !current.is_empty() {
            result.push(current);
        }

        result
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() == MAX
    }
}

impl<T: private::WordSized> ReportList<T> {
    /// Moves items from the front of `other` to the end of this list while they fit in
    /// `words_left` and the list has room. Returns how many moved.
    pub(crate) fn append_all_possible(&mut self, other: &mut Self, mut words_left: usize) -> usize {
        let room = MAX - self.len();
        let moved = other
            .0
            .iter()
            .take(room)
            .take_while(|item| {
                let fits = item.word_size() <= words_left;
                if fits {
                    words_left -= item.word_size();
                }
                fits
            })
            .count();
        self.0.extend(other.0.drain(..moved));
        moved
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
        ReportList(vec![t])
    }
}

impl<T: fmt::Debug> fmt::Debug for ReportList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[")?;
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{s:?}")?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod test {
    use super::ReportList;
    use super::private::WordSized;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Words(usize);

    impl WordSized for Words {
        fn word_size(&self) -> usize {
            self.0
        }
    }

    fn words(sizes: &[usize]) -> ReportList<Words> {
        let mut list = ReportList::new();
        for &n in sizes {
            list.push(Words(n));
        }
        list
    }

    #[test]
    fn appending_moves_what_fits_from_the_front_and_keeps_the_rest_in_order() {
        let mut to = words(&[1]);
        let mut from = words(&[2, 3, 4, 1]);
        assert_eq!(to.append_all_possible(&mut from, 6), 2);
        assert_eq!(to, words(&[1, 2, 3]));
        assert_eq!(from, words(&[4, 1]));

        let mut full = ReportList::lists_from_iter((0..31).map(|_| Words(1))).remove(0);
        let mut more = words(&[1, 1]);
        assert_eq!(full.append_all_possible(&mut more, 100), 0);
        assert_eq!((full.len(), more.len()), (31, 2));
    }

    #[test]
    fn a_source_description_is_as_small_as_what_it_holds() {
        use crate::rtp_::{Rtcp, Sdes};
        // Was 31 chunks of 31 values in place: about 31 KB, cleared and moved for each SDES.
        assert!(std::mem::size_of::<ReportList<Sdes>>() <= 32);
        assert!(std::mem::size_of::<Rtcp>() <= 128, "{}", std::mem::size_of::<Rtcp>());
    }

    #[test]
    fn test_lists_from_iter() {
        let lists = ReportList::lists_from_iter(0..66);

        assert_eq!(lists.len(), 3);
        assert_eq!(lists[0].len(), 31);
        assert_eq!(lists[1].len(), 31);
        assert_eq!(lists[2].len(), 4);
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
