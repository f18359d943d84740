;; GC types: allocates a struct and an array on the GC heap, sums their
;; fields; prints "gc: 42".
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (type $pair (struct (field $a i32) (field $b i32)))
  (type $nums (array (mut i32)))
  (data (i32.const 16) "gc: 42\n")
  (func (export "_start")
    (local $p (ref $pair))
    (local $xs (ref $nums))
    (local.set $p (struct.new $pair (i32.const 30) (i32.const 2)))
    (local.set $xs (array.new $nums (i32.const 2) (i32.const 5)))
    (if (i32.ne
          (i32.add
            (i32.add (struct.get $pair $a (local.get $p)) (struct.get $pair $b (local.get $p)))
            (i32.mul (array.len (local.get $xs)) (array.get $nums (local.get $xs) (i32.const 4))))
          (i32.const 42))
      (then (unreachable)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 7))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
