//! Red-black trees whose nodes live in kernel memory (`lib/rbtree.c`,
//! `include/linux/rbtree_augmented.h`).
//!
//! A node is named by its kernel address (0 is NULL). Its colour shares a word with its
//! parent pointer (`__rb_parent_color`, bit 0 set = black), as the kernel packs them. The
//! tree calls [`RbOps::recompute`] on every node whose subtree changed, so an augmented tree
//! (vmalloc's free tree keeps the largest free block of each subtree) stays exact after
//! every insert, erase and rotation.

/// The NULL node.
pub(crate) const NIL: u64 = 0;
/// The colour bit of `__rb_parent_color` (`RB_BLACK`).
const BLACK: u64 = 1;

/// Access to the nodes of one tree.
pub(crate) trait RbOps {
    /// `__rb_parent_color` of `n`.
    fn parent_color(&self, n: u64) -> u64;
    /// Set `__rb_parent_color` of `n`.
    fn set_parent_color(&self, n: u64, pc: u64);
    /// `rb_left`.
    fn left(&self, n: u64) -> u64;
    /// `rb_right`.
    fn right(&self, n: u64) -> u64;
    /// Set `rb_left`.
    fn set_left(&self, n: u64, child: u64);
    /// Set `rb_right`.
    fn set_right(&self, n: u64, child: u64);
    /// Recompute the augmented value of `n` from its own and its children's (the
    /// `compute` callback of `RB_DECLARE_CALLBACKS`); a plain tree does nothing.
    fn recompute(&self, n: u64) -> bool;
}

/// `rb_parent()`.
pub(crate) fn parent(o: &impl RbOps, n: u64) -> u64 {
    o.parent_color(n) & !BLACK
}

fn is_black(o: &impl RbOps, n: u64) -> bool {
    n == NIL || o.parent_color(n) & BLACK != 0
}

/// Whether `n` is red (NULL leaves are black).
pub(crate) fn is_red(o: &impl RbOps, n: u64) -> bool {
    !is_black(o, n)
}

fn set_parent(o: &impl RbOps, n: u64, p: u64) {
    o.set_parent_color(n, p | (o.parent_color(n) & BLACK));
}

fn set_black(o: &impl RbOps, n: u64) {
    if n != NIL {
        o.set_parent_color(n, o.parent_color(n) | BLACK);
    }
}

fn set_red(o: &impl RbOps, n: u64) {
    o.set_parent_color(n, o.parent_color(n) & !BLACK);
}

/// `__rb_change_child()`: make `new` take `old`'s place under `parent` (or as the root).
fn change_child(o: &impl RbOps, old: u64, new: u64, parent: u64, root: &mut u64) {
    if parent == NIL {
        *root = new;
    } else if o.left(parent) == old {
        o.set_left(parent, new);
    } else {
        o.set_right(parent, new);
    }
}

/// Rotate left around `x`; `x`'s right child takes its place. The two nodes whose
/// subtrees changed are recomputed, lower one first (`augment_rotate`).
fn rotate_left(o: &impl RbOps, x: u64, root: &mut u64) {
    let y = o.right(x);
    let p = parent(o, x);
    let inner = o.left(y);
    o.set_right(x, inner);
    if inner != NIL {
        set_parent(o, inner, x);
    }
    set_parent(o, y, p);
    change_child(o, x, y, p, root);
    o.set_left(y, x);
    set_parent(o, x, y);
    o.recompute(x);
    o.recompute(y);
}

/// Rotate right around `x`; the mirror of [`rotate_left`].
fn rotate_right(o: &impl RbOps, x: u64, root: &mut u64) {
    let y = o.left(x);
    let p = parent(o, x);
    let inner = o.right(y);
    o.set_left(x, inner);
    if inner != NIL {
        set_parent(o, inner, x);
    }
    set_parent(o, y, p);
    change_child(o, x, y, p, root);
    o.set_right(y, x);
    set_parent(o, x, y);
    o.recompute(x);
    o.recompute(y);
}

/// `rb_link_node()` + `rb_insert_augmented()`: hang `node` (red) under `parent` on the
/// given side, bring the augmented values of its ancestors up to date, and rebalance.
pub(crate) fn insert(o: &impl RbOps, node: u64, parent_node: u64, as_left: bool, root: &mut u64) {
    o.set_parent_color(node, parent_node);
    o.set_left(node, NIL);
    o.set_right(node, NIL);
    if parent_node == NIL {
        *root = node;
    } else if as_left {
        o.set_left(parent_node, node);
    } else {
        o.set_right(parent_node, node);
    }
    o.recompute(node);
    propagate(o, parent_node);
    insert_fixup(o, node, root);
}

/// `augment_propagate`: recompute from `n` up, stopping where nothing changes (each node
/// above was exact before the change below it).
pub(crate) fn propagate(o: &impl RbOps, mut n: u64) {
    while n != NIL {
        if !o.recompute(n) {
            break;
        }
        n = parent(o, n);
    }
}

/// Recompute every node from `n` to the root.
fn propagate_to_root(o: &impl RbOps, mut n: u64) {
    while n != NIL {
        o.recompute(n);
        n = parent(o, n);
    }
}

/// `__rb_insert()`: restore the red-black properties after linking a red node.
fn insert_fixup(o: &impl RbOps, mut z: u64, root: &mut u64) {
    loop {
        let mut p = parent(o, z);
        if p == NIL {
            set_black(o, z);
            return;
        }
        if is_black(o, p) {
            return;
        }
        // A red parent is never the root, so the grandparent exists.
        let g = parent(o, p);
        if p == o.left(g) {
            let uncle = o.right(g);
            if is_red(o, uncle) {
                set_black(o, p);
                set_black(o, uncle);
                set_red(o, g);
                z = g;
                continue;
            }
            if z == o.right(p) {
                rotate_left(o, p, root);
                z = p;
                p = parent(o, z);
            }
            set_black(o, p);
            set_red(o, g);
            rotate_right(o, g, root);
        } else {
            let uncle = o.left(g);
            if is_red(o, uncle) {
                set_black(o, p);
                set_black(o, uncle);
                set_red(o, g);
                z = g;
                continue;
            }
            if z == o.left(p) {
                rotate_right(o, p, root);
                z = p;
                p = parent(o, z);
            }
            set_black(o, p);
            set_red(o, g);
            rotate_left(o, g, root);
        }
        return;
    }
}

/// `rb_erase_augmented()`: unlink `z`, bring the augmented values up to date, rebalance.
pub(crate) fn erase(o: &impl RbOps, z: u64, root: &mut u64) {
    let (zl, zr) = (o.left(z), o.right(z));
    let (x, x_parent, removed_black);
    if zl == NIL || zr == NIL {
        let child = if zl == NIL { zr } else { zl };
        let p = parent(o, z);
        removed_black = is_black(o, z);
        if child != NIL {
            set_parent(o, child, p);
        }
        change_child(o, z, child, p, root);
        x = child;
        x_parent = p;
    } else {
        // The successor takes z's place and colour.
        let mut y = zr;
        while o.left(y) != NIL {
            y = o.left(y);
        }
        removed_black = is_black(o, y);
        x = o.right(y);
        if parent(o, y) == z {
            x_parent = y;
        } else {
            x_parent = parent(o, y);
            if x != NIL {
                set_parent(o, x, x_parent);
            }
            o.set_left(x_parent, x);
            o.set_right(y, zr);
            set_parent(o, zr, y);
        }
        let zp = parent(o, z);
        change_child(o, z, y, zp, root);
        o.set_parent_color(y, o.parent_color(z));
        o.set_left(y, zl);
        set_parent(o, zl, y);
    }
    propagate_to_root(o, x_parent);
    if removed_black {
        erase_fixup(o, x, x_parent, root);
    }
}

/// `____rb_erase_color()`: restore the black height after removing a black node.
fn erase_fixup(o: &impl RbOps, mut x: u64, mut p: u64, root: &mut u64) {
    while x != *root && is_black(o, x) {
        if x == o.left(p) {
            let mut w = o.right(p);
            if is_red(o, w) {
                set_black(o, w);
                set_red(o, p);
                rotate_left(o, p, root);
                w = o.right(p);
            }
            if is_black(o, o.left(w)) && is_black(o, o.right(w)) {
                set_red(o, w);
                x = p;
                p = parent(o, x);
            } else {
                if is_black(o, o.right(w)) {
                    set_black(o, o.left(w));
                    set_red(o, w);
                    rotate_right(o, w, root);
                    w = o.right(p);
                }
                copy_colour(o, w, p);
                set_black(o, p);
                set_black(o, o.right(w));
                rotate_left(o, p, root);
                x = *root;
            }
        } else {
            let mut w = o.left(p);
            if is_red(o, w) {
                set_black(o, w);
                set_red(o, p);
                rotate_right(o, p, root);
                w = o.left(p);
            }
            if is_black(o, o.left(w)) && is_black(o, o.right(w)) {
                set_red(o, w);
                x = p;
                p = parent(o, x);
            } else {
                if is_black(o, o.left(w)) {
                    set_black(o, o.right(w));
                    set_red(o, w);
                    rotate_left(o, w, root);
                    w = o.left(p);
                }
                copy_colour(o, w, p);
                set_black(o, p);
                set_black(o, o.left(w));
                rotate_right(o, p, root);
                x = *root;
            }
        }
    }
    set_black(o, x);
}

fn copy_colour(o: &impl RbOps, to: u64, from: u64) {
    if is_black(o, from) {
        set_black(o, to);
    } else {
        set_red(o, to);
    }
}

/// `rb_first()`.
pub(crate) fn first(o: &impl RbOps, root: u64) -> u64 {
    let mut n = root;
    if n == NIL {
        return NIL;
    }
    while o.left(n) != NIL {
        n = o.left(n);
    }
    n
}

/// `rb_next()`: the in-order successor.
pub(crate) fn next(o: &impl RbOps, n: u64) -> u64 {
    let r = o.right(n);
    if r != NIL {
        return first(o, r);
    }
    let mut child = n;
    let mut p = parent(o, n);
    while p != NIL && o.right(p) == child {
        child = p;
        p = parent(o, p);
    }
    p
}

/// Why a tree is not a valid red-black tree.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RbViolation {
    /// The root is red.
    RedRoot,
    /// A red node has a red child.
    RedRed(u64),
    /// Two paths from a node to its leaves cross different numbers of black nodes.
    BlackHeight(u64),
    /// A child's parent pointer does not point back.
    BadParent(u64),
    /// More nodes than can exist (a cycle).
    Cycle,
}

/// Check the red-black properties and the parent pointers; return the node count.
pub(crate) fn validate(o: &impl RbOps, root: u64, limit: u64) -> Result<u64, RbViolation> {
    if root == NIL {
        return Ok(0);
    }
    if is_red(o, root) {
        return Err(RbViolation::RedRoot);
    }
    if parent(o, root) != NIL {
        return Err(RbViolation::BadParent(root));
    }
    let mut count = 0;
    black_height(o, root, &mut count, limit)?;
    Ok(count)
}

fn black_height(o: &impl RbOps, n: u64, count: &mut u64, limit: u64) -> Result<u32, RbViolation> {
    if n == NIL {
        return Ok(1);
    }
    *count += 1;
    if *count > limit {
        return Err(RbViolation::Cycle);
    }
    let (l, r) = (o.left(n), o.right(n));
    for child in [l, r] {
        if child != NIL && parent(o, child) != n {
            return Err(RbViolation::BadParent(child));
        }
        if is_red(o, n) && is_red(o, child) {
            return Err(RbViolation::RedRed(n));
        }
    }
    let hl = black_height(o, l, count, limit)?;
    let hr = black_height(o, r, count, limit)?;
    if hl != hr {
        return Err(RbViolation::BlackHeight(n));
    }
    Ok(hl + is_black(o, n) as u32)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::cell::RefCell;
    use std::vec::Vec;

    /// Nodes 1..=N in a vector; each keeps a key and the max key of its subtree.
    struct Fake {
        nodes: RefCell<Vec<[u64; 5]>>, // parent_color, left, right, key, max
    }

    impl Fake {
        fn new(n: usize) -> Fake {
            Fake {
                nodes: RefCell::new(std::vec![[0; 5]; n + 1]),
            }
        }
        fn id(i: usize) -> u64 {
            (i as u64) * 8
        }
        fn get(&self, n: u64, f: usize) -> u64 {
            self.nodes.borrow()[(n / 8) as usize][f]
        }
        fn set(&self, n: u64, f: usize, v: u64) {
            self.nodes.borrow_mut()[(n / 8) as usize][f] = v;
        }
    }

    impl RbOps for Fake {
        fn parent_color(&self, n: u64) -> u64 {
            self.get(n, 0)
        }
        fn set_parent_color(&self, n: u64, pc: u64) {
            self.set(n, 0, pc)
        }
        fn left(&self, n: u64) -> u64 {
            self.get(n, 1)
        }
        fn right(&self, n: u64) -> u64 {
            self.get(n, 2)
        }
        fn set_left(&self, n: u64, c: u64) {
            self.set(n, 1, c)
        }
        fn set_right(&self, n: u64, c: u64) {
            self.set(n, 2, c)
        }
        fn recompute(&self, n: u64) -> bool {
            let mut m = self.get(n, 3);
            for c in [self.left(n), self.right(n)] {
                if c != NIL {
                    m = m.max(self.get(c, 4));
                }
            }
            let changed = m != self.get(n, 4);
            self.set(n, 4, m);
            changed
        }
    }

    fn insert_key(t: &Fake, root: &mut u64, node: u64, key: u64) {
        t.set(node, 3, key);
        let (mut p, mut left) = (NIL, false);
        let mut cur = *root;
        while cur != NIL {
            p = cur;
            left = key < t.get(cur, 3);
            cur = if left { t.left(cur) } else { t.right(cur) };
        }
        insert(t, node, p, left, root);
    }

    fn check_max(t: &Fake, n: u64) -> u64 {
        if n == NIL {
            return 0;
        }
        let m = t
            .get(n, 3)
            .max(check_max(t, t.left(n)))
            .max(check_max(t, t.right(n)));
        assert_eq!(t.get(n, 4), m, "augmented value of node {n}");
        m
    }

    #[test]
    fn random_inserts_and_erases_keep_every_property() {
        let n = 600;
        let t = Fake::new(n);
        let mut root = NIL;
        let mut live: Vec<usize> = Vec::new();
        let mut x: u64 = 12345;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut free: Vec<usize> = (1..=n).collect();
        for step in 0..5000 {
            let grow = live.is_empty() || (!free.is_empty() && rnd() % 3 != 0);
            if grow {
                let i = free.swap_remove((rnd() % free.len() as u64) as usize);
                insert_key(&t, &mut root, Fake::id(i), rnd() % 10_000);
                live.push(i);
            } else {
                let i = live.swap_remove((rnd() % live.len() as u64) as usize);
                erase(&t, Fake::id(i), &mut root);
                free.push(i);
            }
            assert_eq!(
                validate(&t, root, n as u64),
                Ok(live.len() as u64),
                "step {step}"
            );
            check_max(&t, root);
            // In-order keys ascend.
            let mut prev = 0;
            let mut cur = first(&t, root);
            let mut seen = 0;
            while cur != NIL {
                assert!(t.get(cur, 3) >= prev);
                prev = t.get(cur, 3);
                cur = next(&t, cur);
                seen += 1;
            }
            assert_eq!(seen, live.len());
        }
    }
}
