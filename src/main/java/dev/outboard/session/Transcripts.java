package dev.outboard.session;

import java.util.AbstractList;
import java.util.List;
import java.util.Objects;
import java.util.RandomAccess;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Immutable lists that grow at the end in constant time, for a session's transcript: every event
 * appends to it, and a long session's state would otherwise copy thousands of messages per event
 * (several times per turn, as the entity folds each write's events before and as it records them).
 * A list shares its backing array with the longer lists made from it; appending to a list that is
 * not the longest one made from its array appends in place if the next slot already holds an equal
 * item (the same event folded twice), and copies otherwise.
 */
final class Transcripts {
  private Transcripts() {}

  /** {@code list} with {@code item} at the end; {@code list} itself is unchanged. */
  static <T> List<T> append(List<T> list, T item) {
    if (list instanceof Growing<T> growing) return growing.plus(item);
    Store store = new Store(Math.max(8, (list.size() + 1) * 2));
    int n = 0;
    for (T t : list) store.items[n++] = t;
    store.items[n] = item;
    store.used.set(n + 1);
    return new Growing<>(store, n + 1);
  }

  private static final class Store {
    final Object[] items;

    /** How many slots the longest list made from this array uses. */
    final AtomicInteger used = new AtomicInteger();

    Store(int capacity) {
      items = new Object[capacity];
    }
  }

  private static final class Growing<T> extends AbstractList<T> implements RandomAccess {
    private final Store store;
    private final int size;

    Growing(Store store, int size) {
      this.store = store;
      this.size = size;
    }

    Growing<T> plus(T item) {
      Objects.requireNonNull(item);
      Store s = store;
      if (size < s.items.length) {
        if (s.used.compareAndSet(size, size + 1)) {
          s.items[size] = item; // before the new list is handed to anyone
          return new Growing<>(s, size + 1);
        }
        if (item.equals(s.items[size])) return new Growing<>(s, size + 1);
      }
      Store copy = new Store(Math.max(8, (size + 1) * 2));
      System.arraycopy(s.items, 0, copy.items, 0, size);
      copy.items[size] = item;
      copy.used.set(size + 1);
      return new Growing<>(copy, size + 1);
    }

    @Override
    @SuppressWarnings("unchecked")
    public T get(int index) {
      Objects.checkIndex(index, size);
      return (T) store.items[index];
    }

    @Override
    public int size() {
      return size;
    }
  }
}
