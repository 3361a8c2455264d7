//! Named locks that exist while someone uses them: the first user of a name creates the entry,
//! the last one gone removes it, so a service that locks on millions of distinct ids (volume,
//! instance UUIDs) does not grow.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use parking_lot::Mutex;

pub struct Registry<T> {
    entries: Mutex<HashMap<Box<str>, Arc<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Registry<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry for `name`, made by `make` when nobody uses that name now.
    ///
    /// # Errors
    /// Whatever `make` returns; nothing is registered then.
    pub fn get<E>(
        self: &Arc<Self>,
        name: &str,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<Handle<T>, E> {
        let mut entries = self.entries.lock();
        let entry = match entries.get(name) {
            Some(entry) => Arc::clone(entry),
            None => {
                let entry = Arc::new(make()?);
                entries.insert(name.into(), Arc::clone(&entry));
                entry
            }
        };
        Ok(Handle {
            entry: Some(entry),
            name: name.into(),
            registry: Arc::clone(self),
        })
    }
}

/// One user's share of a named entry; dropping the last share removes the name.
pub struct Handle<T> {
    entry: Option<Arc<T>>,
    name: Box<str>,
    registry: Arc<Registry<T>>,
}

impl<T> Handle<T> {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<T> Deref for Handle<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.entry {
            Some(entry) => entry,
            // `entry` is only taken in `drop`, after which no deref can happen.
            None => unreachable!("handle used after drop"),
        }
    }
}

impl<T> Drop for Handle<T> {
    fn drop(&mut self) {
        let mut entries = self.registry.entries.lock();
        // Shares are made and dropped under the registry lock, so the count is exact here:
        // 2 means the map's and ours.
        if let Some(entry) = self.entry.take() {
            if Arc::strong_count(&entry) == 2 {
                entries.remove(&*self.name);
            }
            drop(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn entries_live_while_used() {
        let r: Arc<Registry<u32>> = Registry::new();
        let a = r
            .get("x", || Ok::<_, Infallible>(1))
            .unwrap_or_else(|e| match e {});
        let b = r
            .get("x", || Ok::<_, Infallible>(2))
            .unwrap_or_else(|e| match e {});
        assert_eq!((*a, *b, r.len()), (1, 1, 1));
        drop(a);
        assert_eq!(r.len(), 1);
        drop(b);
        assert!(r.is_empty());
        for i in 0..100_000 {
            let h = r
                .get(&format!("n{i}"), || Ok::<_, Infallible>(i))
                .unwrap_or_else(|e| match e {});
            assert_eq!(*h, i);
        }
        assert!(r.is_empty());
    }
}
