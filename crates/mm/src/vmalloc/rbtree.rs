//! Red-black trees whose nodes live in kernel memory (`lib/rbtree.c`,
//! `include/linux/rbtree_augmented.h`).
//!
//! A node is named by its kernel address (0 is NULL). Its colour shares a word with its
//! parent pointer (`__rb_parent_color`, bit 0 set = black), as the kernel packs them. The
//! tree calls [`RbOps::recompute`] on every node whose subtree changed, so an augmented tree
//! (vmalloc's free tree keeps the largest free block of each subtree) stays exact after
//! every insert, erase and rotation.
//!
//! The nodes are in simulated RAM, which anything may have overwritten, so every access
//! is fallible: [`RbOps`] refuses a link that names no node (after reporting it as the
//! kernel's page fault would be reported), and every walk is bounded by
//! [`RbOps::max_steps`], the number of nodes that could possibly be in the tree. A walk
//! that takes more steps is going round a cycle: where the kernel would spin forever with
//! the tree's lock held, [`RbOps::stuck`] reports it and the operation stops with
//! [`Corrupt`].

/// The NULL node.
pub(in crate::vmalloc) const NIL: u64 = 0;
/// The colour bit of `__rb_parent_color` (`RB_BLACK`).
const BLACK: u64 = 1;

/// A node or link that is not what the tree needs (a pointer outside RAM, a cycle): it
/// has been reported, and the operation that met it stops here.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(in crate::vmalloc) struct Corrupt {
    /// The address that could not be used.
    pub(in crate::vmalloc) addr: u64,
}

/// What the tree operations return.
pub(in crate::vmalloc) type RbResult<T> = Result<T, Corrupt>;

/// Access to the nodes of one tree.
pub(in crate::vmalloc) trait RbOps {
    /// `__rb_parent_color` of `n`.
    fn parent_color(&self, n: u64) -> RbResult<u64>;
    /// Set `__rb_parent_color` of `n`.
    fn set_parent_color(&self, n: u64, pc: u64) -> RbResult<()>;
    /// `rb_left`.
    fn left(&self, n: u64) -> RbResult<u64>;
    /// `rb_right`.
    fn right(&self, n: u64) -> RbResult<u64>;
    /// Set `rb_left`.
    fn set_left(&self, n: u64, child: u64) -> RbResult<()>;
    /// Set `rb_right`.
    fn set_right(&self, n: u64, child: u64) -> RbResult<()>;
    /// Recompute the augmented value of `n` from its own and its children's (the
    /// `compute` callback of `RB_DECLARE_CALLBACKS`); a plain tree does nothing.
    fn recompute(&self, n: u64) -> RbResult<bool>;
    /// The most steps a walk of this tree can take: more nodes than the tree holds means
    /// the links go round in a cycle.
    fn max_steps(&self) -> u64;
    /// Report a walk that went past [`RbOps::max_steps`] at node `n` (where the kernel
    /// would never come back) and give the error to stop with.
    fn stuck(&self, n: u64) -> Corrupt;
}

/// A step counter for one walk.
pub(in crate::vmalloc) struct Steps {
    left: u64,
}

impl Steps {
    /// A counter allowing [`RbOps::max_steps`] steps.
    pub(in crate::vmalloc) fn new(o: &impl RbOps) -> Steps {
        Steps {
            left: o.max_steps(),
        }
    }

    /// Count one more step at node `n`; past the limit, the walk is stuck.
    #[inline]
    pub(in crate::vmalloc) fn take(&mut self, o: &impl RbOps, n: u64) -> RbResult<()> {
        if self.left == 0 {
            return Err(o.stuck(n));
        }
        self.left -= 1;
        Ok(())
    }
}

/// `rb_parent()`.
pub(in crate::vmalloc) fn parent(o: &impl RbOps, n: u64) -> RbResult<u64> {
    Ok(o.parent_color(n)? & !BLACK)
}

fn is_black(o: &impl RbOps, n: u64) -> RbResult<bool> {
    Ok(n == NIL || o.parent_color(n)? & BLACK != 0)
}

/// Whether `n` is red (NULL leaves are black).
pub(in crate::vmalloc) fn is_red(o: &impl RbOps, n: u64) -> RbResult<bool> {
    Ok(!is_black(o, n)?)
}

fn set_parent(o: &impl RbOps, n: u64, p: u64) -> RbResult<()> {
    o.set_parent_color(n, p | (o.parent_color(n)? & BLACK))
}

fn set_black(o: &impl RbOps, n: u64) -> RbResult<()> {
    if n != NIL {
        o.set_parent_color(n, o.parent_color(n)? | BLACK)?;
    }
    Ok(())
}

fn set_red(o: &impl RbOps, n: u64) -> RbResult<()> {
    o.set_parent_color(n, o.parent_color(n)? & !BLACK)
}

/// `__rb_change_child()`: make `new` take `old`'s place under `parent` (or as the root).
fn change_child(o: &impl RbOps, old: u64, new: u64, parent: u64, root: &mut u64) -> RbResult<()> {
    if parent == NIL {
        *root = new;
    } else if o.left(parent)? == old {
        o.set_left(parent, new)?;
    } else {
        o.set_right(parent, new)?;
    }
    Ok(())
}

/// Rotate left around `x`; `x`'s right child takes its place. The two nodes whose
/// subtrees changed are recomputed, lower one first (`augment_rotate`).
fn rotate_left(o: &impl RbOps, x: u64, root: &mut u64) -> RbResult<()> {
    let y = o.right(x)?;
    let p = parent(o, x)?;
    let inner = o.left(y)?;
    o.set_right(x, inner)?;
    if inner != NIL {
        set_parent(o, inner, x)?;
    }
    set_parent(o, y, p)?;
    change_child(o, x, y, p, root)?;
    o.set_left(y, x)?;
    set_parent(o, x, y)?;
    o.recompute(x)?;
    o.recompute(y)?;
    Ok(())
}

/// Rotate right around `x`; the mirror of [`rotate_left`].
fn rotate_right(o: &impl RbOps, x: u64, root: &mut u64) -> RbResult<()> {
    let y = o.left(x)?;
    let p = parent(o, x)?;
    let inner = o.right(y)?;
    o.set_left(x, inner)?;
    if inner != NIL {
        set_parent(o, inner, x)?;
    }
    set_parent(o, y, p)?;
    change_child(o, x, y, p, root)?;
    o.set_right(y, x)?;
    set_parent(o, x, y)?;
    o.recompute(x)?;
    o.recompute(y)?;
    Ok(())
}

/// `rb_link_node()` + `rb_insert_augmented()`: hang `node` (red) under `parent` on the
/// given side, bring the augmented values of its ancestors up to date, and rebalance.
pub(in crate::vmalloc) fn insert(
    o: &impl RbOps,
    node: u64,
    parent_node: u64,
    as_left: bool,
    root: &mut u64,
) -> RbResult<()> {
    o.set_parent_color(node, parent_node)?;
    o.set_left(node, NIL)?;
    o.set_right(node, NIL)?;
    if parent_node == NIL {
        *root = node;
    } else if as_left {
        o.set_left(parent_node, node)?;
    } else {
        o.set_right(parent_node, node)?;
    }
    o.recompute(node)?;
    propagate(o, parent_node)?;
    insert_fixup(o, node, root)
}

/// `augment_propagate`: recompute from `n` up, stopping where nothing changes (each node
/// above was exact before the change below it).
pub(in crate::vmalloc) fn propagate(o: &impl RbOps, mut n: u64) -> RbResult<()> {
    let mut steps = Steps::new(o);
    while n != NIL {
        steps.take(o, n)?;
        if !o.recompute(n)? {
            break;
        }
        n = parent(o, n)?;
    }
    Ok(())
}

/// Recompute every node from `n` to the root.
fn propagate_to_root(o: &impl RbOps, mut n: u64) -> RbResult<()> {
    let mut steps = Steps::new(o);
    while n != NIL {
        steps.take(o, n)?;
        o.recompute(n)?;
        n = parent(o, n)?;
    }
    Ok(())
}

/// `__rb_insert()`: restore the red-black properties after linking a red node.
fn insert_fixup(o: &impl RbOps, mut z: u64, root: &mut u64) -> RbResult<()> {
    let mut steps = Steps::new(o);
    loop {
        steps.take(o, z)?;
        let mut p = parent(o, z)?;
        if p == NIL {
            return set_black(o, z);
        }
        if is_black(o, p)? {
            return Ok(());
        }
        // A red parent is never the root, so the grandparent exists (in a sound tree; a
        // corrupted one fails on the NULL node's access).
        let g = parent(o, p)?;
        if p == o.left(g)? {
            let uncle = o.right(g)?;
            if is_red(o, uncle)? {
                set_black(o, p)?;
                set_black(o, uncle)?;
                set_red(o, g)?;
                z = g;
                continue;
            }
            if z == o.right(p)? {
                rotate_left(o, p, root)?;
                z = p;
                p = parent(o, z)?;
            }
            set_black(o, p)?;
            set_red(o, g)?;
            rotate_right(o, g, root)?;
        } else {
            let uncle = o.left(g)?;
            if is_red(o, uncle)? {
                set_black(o, p)?;
                set_black(o, uncle)?;
                set_red(o, g)?;
                z = g;
                continue;
            }
            if z == o.left(p)? {
                rotate_right(o, p, root)?;
                z = p;
                p = parent(o, z)?;
            }
            set_black(o, p)?;
            set_red(o, g)?;
            rotate_left(o, g, root)?;
        }
        return Ok(());
    }
}

/// `rb_erase_augmented()`: unlink `z`, bring the augmented values up to date, rebalance.
pub(in crate::vmalloc) fn erase(o: &impl RbOps, z: u64, root: &mut u64) -> RbResult<()> {
    let (zl, zr) = (o.left(z)?, o.right(z)?);
    let (x, x_parent, removed_black);
    if zl == NIL || zr == NIL {
        let child = if zl == NIL { zr } else { zl };
        let p = parent(o, z)?;
        removed_black = is_black(o, z)?;
        if child != NIL {
            set_parent(o, child, p)?;
        }
        change_child(o, z, child, p, root)?;
        x = child;
        x_parent = p;
    } else {
        // The successor takes z's place and colour.
        let mut steps = Steps::new(o);
        let mut y = zr;
        loop {
            steps.take(o, y)?;
            let l = o.left(y)?;
            if l == NIL {
                break;
            }
            y = l;
        }
        removed_black = is_black(o, y)?;
        x = o.right(y)?;
        if parent(o, y)? == z {
            x_parent = y;
        } else {
            x_parent = parent(o, y)?;
            if x != NIL {
                set_parent(o, x, x_parent)?;
            }
            o.set_left(x_parent, x)?;
            o.set_right(y, zr)?;
            set_parent(o, zr, y)?;
        }
        let zp = parent(o, z)?;
        change_child(o, z, y, zp, root)?;
        o.set_parent_color(y, o.parent_color(z)?)?;
        o.set_left(y, zl)?;
        set_parent(o, zl, y)?;
    }
    propagate_to_root(o, x_parent)?;
    if removed_black {
        erase_fixup(o, x, x_parent, root)?;
    }
    Ok(())
}

/// `____rb_erase_color()`: restore the black height after removing a black node.
fn erase_fixup(o: &impl RbOps, mut x: u64, mut p: u64, root: &mut u64) -> RbResult<()> {
    let mut steps = Steps::new(o);
    while x != *root && is_black(o, x)? {
        steps.take(o, p)?;
        if x == o.left(p)? {
            let mut w = o.right(p)?;
            if is_red(o, w)? {
                set_black(o, w)?;
                set_red(o, p)?;
                rotate_left(o, p, root)?;
                w = o.right(p)?;
            }
            if is_black(o, o.left(w)?)? && is_black(o, o.right(w)?)? {
                set_red(o, w)?;
                x = p;
                p = parent(o, x)?;
            } else {
                if is_black(o, o.right(w)?)? {
                    set_black(o, o.left(w)?)?;
                    set_red(o, w)?;
                    rotate_right(o, w, root)?;
                    w = o.right(p)?;
                }
                copy_colour(o, w, p)?;
                set_black(o, p)?;
                set_black(o, o.right(w)?)?;
                rotate_left(o, p, root)?;
                x = *root;
            }
        } else {
            let mut w = o.left(p)?;
            if is_red(o, w)? {
                set_black(o, w)?;
                set_red(o, p)?;
                rotate_right(o, p, root)?;
                w = o.left(p)?;
            }
            if is_black(o, o.left(w)?)? && is_black(o, o.right(w)?)? {
                set_red(o, w)?;
                x = p;
                p = parent(o, x)?;
            } else {
                if is_black(o, o.left(w)?)? {
                    set_black(o, o.right(w)?)?;
                    set_red(o, w)?;
                    rotate_left(o, w, root)?;
                    w = o.left(p)?;
                }
                copy_colour(o, w, p)?;
                set_black(o, p)?;
                set_black(o, o.left(w)?)?;
                rotate_right(o, p, root)?;
                x = *root;
            }
        }
    }
    set_black(o, x)
}

fn copy_colour(o: &impl RbOps, to: u64, from: u64) -> RbResult<()> {
    if is_black(o, from)? {
        set_black(o, to)
    } else {
        set_red(o, to)
    }
}

/// `rb_first()`.
pub(in crate::vmalloc) fn first(o: &impl RbOps, root: u64) -> RbResult<u64> {
    let mut n = root;
    if n == NIL {
        return Ok(NIL);
    }
    let mut steps = Steps::new(o);
    loop {
        steps.take(o, n)?;
        let l = o.left(n)?;
        if l == NIL {
            return Ok(n);
        }
        n = l;
    }
}

/// `rb_next()`: the in-order successor.
pub(in crate::vmalloc) fn next(o: &impl RbOps, n: u64) -> RbResult<u64> {
    let r = o.right(n)?;
    if r != NIL {
        return first(o, r);
    }
    let mut steps = Steps::new(o);
    let mut child = n;
    let mut p = parent(o, n)?;
    while p != NIL && o.right(p)? == child {
        steps.take(o, p)?;
        child = p;
        p = parent(o, p)?;
    }
    Ok(p)
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
    /// A link that names no node (outside RAM, misaligned, not a `vmap_area`).
    BadNode(u64),
}

impl From<Corrupt> for RbViolation {
    fn from(c: Corrupt) -> RbViolation {
        RbViolation::BadNode(c.addr)
    }
}

/// Check the red-black properties and the parent pointers; return the node count. At
/// most `limit` nodes are visited, and no path deeper than a red-black tree of `limit`
/// nodes can be (2 log2(limit + 1)) is followed, so a corrupted tree cannot send the
/// check round a cycle or down a chain deep enough to exhaust the host's stack.
pub(in crate::vmalloc) fn validate(
    o: &impl RbOps,
    root: u64,
    limit: u64,
) -> Result<u64, RbViolation> {
    if root == NIL {
        return Ok(0);
    }
    if is_red(o, root)? {
        return Err(RbViolation::RedRoot);
    }
    if parent(o, root)? != NIL {
        return Err(RbViolation::BadParent(root));
    }
    let mut walk = Walk {
        count: 0,
        limit,
        max_depth: max_height(limit),
    };
    black_height(o, root, 1, &mut walk)?;
    Ok(walk.count)
}

/// The height a red-black tree of `n` nodes cannot exceed: 2 log2(n + 1), rounded up.
pub(in crate::vmalloc) fn max_height(n: u64) -> u32 {
    2 * (64 - n.saturating_add(1).leading_zeros()) + 1
}

/// The bounds of one [`validate`] walk.
struct Walk {
    count: u64,
    limit: u64,
    max_depth: u32,
}

fn black_height(o: &impl RbOps, n: u64, depth: u32, walk: &mut Walk) -> Result<u32, RbViolation> {
    if n == NIL {
        return Ok(1);
    }
    walk.count += 1;
    if walk.count > walk.limit {
        return Err(RbViolation::Cycle);
    }
    if depth > walk.max_depth {
        return Err(RbViolation::BlackHeight(n));
    }
    let (l, r) = (o.left(n)?, o.right(n)?);
    for child in [l, r] {
        if child != NIL && parent(o, child)? != n {
            return Err(RbViolation::BadParent(child));
        }
        if is_red(o, n)? && is_red(o, child)? {
            return Err(RbViolation::RedRed(n));
        }
    }
    let hl = black_height(o, l, depth + 1, walk)?;
    let hr = black_height(o, r, depth + 1, walk)?;
    if hl != hr {
        return Err(RbViolation::BlackHeight(n));
    }
    Ok(hl + is_black(o, n)? as u32)
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
        fn get(&self, n: u64, f: usize) -> RbResult<u64> {
            let nodes = self.nodes.borrow();
            let node = nodes
                .get((n / 8) as usize)
                .filter(|_| n.is_multiple_of(8) && n != NIL);
            node.map(|node| node[f]).ok_or(Corrupt { addr: n })
        }
        fn set(&self, n: u64, f: usize, v: u64) -> RbResult<()> {
            let mut nodes = self.nodes.borrow_mut();
            let node = nodes
                .get_mut((n / 8) as usize)
                .filter(|_| n.is_multiple_of(8) && n != NIL);
            node.map(|node| node[f] = v).ok_or(Corrupt { addr: n })
        }
        fn key(&self, n: u64) -> u64 {
            self.get(n, 3).unwrap()
        }
    }

    impl RbOps for Fake {
        fn parent_color(&self, n: u64) -> RbResult<u64> {
            self.get(n, 0)
        }
        fn set_parent_color(&self, n: u64, pc: u64) -> RbResult<()> {
            self.set(n, 0, pc)
        }
        fn left(&self, n: u64) -> RbResult<u64> {
            self.get(n, 1)
        }
        fn right(&self, n: u64) -> RbResult<u64> {
            self.get(n, 2)
        }
        fn set_left(&self, n: u64, c: u64) -> RbResult<()> {
            self.set(n, 1, c)
        }
        fn set_right(&self, n: u64, c: u64) -> RbResult<()> {
            self.set(n, 2, c)
        }
        fn recompute(&self, n: u64) -> RbResult<bool> {
            let mut m = self.get(n, 3)?;
            for c in [self.left(n)?, self.right(n)?] {
                if c != NIL {
                    m = m.max(self.get(c, 4)?);
                }
            }
            let changed = m != self.get(n, 4)?;
            self.set(n, 4, m)?;
            Ok(changed)
        }
        fn max_steps(&self) -> u64 {
            self.nodes.borrow().len() as u64
        }
        fn stuck(&self, n: u64) -> Corrupt {
            Corrupt { addr: n }
        }
    }

    fn insert_key(t: &Fake, root: &mut u64, node: u64, key: u64) {
        t.set(node, 3, key).unwrap();
        let (mut p, mut left) = (NIL, false);
        let mut cur = *root;
        while cur != NIL {
            p = cur;
            left = key < t.key(cur);
            cur = if left { t.left(cur) } else { t.right(cur) }.unwrap();
        }
        insert(t, node, p, left, root).unwrap();
    }

    fn check_max(t: &Fake, n: u64) -> u64 {
        if n == NIL {
            return 0;
        }
        let m = t
            .key(n)
            .max(check_max(t, t.left(n).unwrap()))
            .max(check_max(t, t.right(n).unwrap()));
        assert_eq!(t.get(n, 4), Ok(m), "augmented value of node {n}");
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
                erase(&t, Fake::id(i), &mut root).unwrap();
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
            let mut cur = first(&t, root).unwrap();
            let mut seen = 0;
            while cur != NIL {
                assert!(t.key(cur) >= prev);
                prev = t.key(cur);
                cur = next(&t, cur).unwrap();
                seen += 1;
            }
            assert_eq!(seen, live.len());
        }
    }

    #[test]
    fn cycles_and_wild_links_end_every_operation() {
        let n = 64;
        let t = Fake::new(n);
        let mut root = NIL;
        for i in 1..=n {
            insert_key(&t, &mut root, Fake::id(i), i as u64 * 10);
        }
        // A cycle: the leftmost node's left link points back at the root.
        let leftmost = first(&t, root).unwrap();
        t.set_left(leftmost, root).unwrap();
        assert!(first(&t, root).is_err());
        assert_eq!(
            validate(&t, root, n as u64).unwrap_err(),
            RbViolation::BadParent(root)
        );
        // A wild link: an erase that walks into it stops with the address.
        t.set_left(leftmost, 0xdead_beef).unwrap();
        assert_eq!(first(&t, root), Err(Corrupt { addr: 0xdead_beef }));
        assert!(matches!(
            validate(&t, root, n as u64),
            Err(RbViolation::BadNode(0xdead_beef))
        ));
        // A parent cycle: propagating up never ends on its own.
        t.set_left(leftmost, NIL).unwrap();
        t.set_parent_color(root, leftmost | BLACK).unwrap();
        assert!(propagate_to_root(&t, leftmost).is_err());
        // A long chain is refused by the depth bound before the host's stack is at risk.
        let chain = Fake::new(n);
        for i in 1..n {
            chain.set_left(Fake::id(i), Fake::id(i + 1)).unwrap();
            chain
                .set_parent_color(Fake::id(i + 1), Fake::id(i) | BLACK)
                .unwrap();
        }
        chain.set_parent_color(Fake::id(1), BLACK).unwrap();
        assert!(validate(&chain, Fake::id(1), n as u64).is_err());
    }
}
