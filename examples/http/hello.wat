;; A wasi:http/proxy handler: answers every request with 200, text/plain,
;; "Hello from a wasi:http component! You asked for PATH". The core module
;; of a component: examples/build.rs embeds the world (examples/wit) and
;; encodes it with wit-component, as `wasm-tools component embed` and
;; `wasm-tools component new` do. Imports and the export follow the
;; canonical ABI's lowering of the WIT functions.
(module
  (import "wasi:http/types@0.2.12" "[constructor]fields" (func $fields_new (result i32)))
  (import "wasi:http/types@0.2.12" "[method]fields.append" (func $fields_append (param i32 i32 i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.12" "[constructor]outgoing-response" (func $response_new (param i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-response.body" (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-body.write" (func $body_write (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[static]outgoing-body.finish" (func $body_finish (param i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.12" "[static]response-outparam.set" (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]incoming-request.path-with-query" (func $path (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[resource-drop]incoming-request" (func $drop_request (param i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.blocking-write-and-flush" (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[resource-drop]output-stream" (func $drop_stream (param i32)))
  (memory (export "memory") 1)
  ;; 0..16: return areas; 64: header name; 80: header value; 96: greeting.
  (data (i32.const 64) "content-type")
  (data (i32.const 80) "text/plain")
  (data (i32.const 96) "Hello from a wasi:http component! You asked for ")
  (global $heap (mut i32) (i32.const 4096))
  ;; The host's strings (the request path) land here: a bump allocator,
  ;; reset by each instance's end.
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.const 1)))))
    (local.get $p))
  (func (export "wasi:http/incoming-handler@0.2.12#handle") (param $request i32) (param $outparam i32)
    (local $headers i32) (local $response i32) (local $body i32) (local $stream i32)
    (local $path i32) (local $path_len i32)
    ;; The path asked for (option<string>: tag, ptr, len).
    (call $path (local.get $request) (i32.const 0))
    (if (i32.load8_u (i32.const 0))
      (then (local.set $path (i32.load (i32.const 4)))
            (local.set $path_len (i32.load (i32.const 8)))))
    (call $drop_request (local.get $request))
    (local.set $headers (call $fields_new))
    (call $fields_append (local.get $headers) (i32.const 64) (i32.const 12) (i32.const 80) (i32.const 10) (i32.const 0))
    (local.set $response (call $response_new (local.get $headers)))
    (call $response_body (local.get $response) (i32.const 0))
    (if (i32.load8_u (i32.const 0)) (then unreachable))
    (local.set $body (i32.load (i32.const 4)))
    ;; Headers go out now; the body follows.
    (call $outparam_set (local.get $outparam) (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $body_write (local.get $body) (i32.const 0))
    (if (i32.load8_u (i32.const 0)) (then unreachable))
    (local.set $stream (i32.load (i32.const 4)))
    (call $write (local.get $stream) (i32.const 96) (i32.const 48) (i32.const 0))
    (call $write (local.get $stream) (local.get $path) (local.get $path_len) (i32.const 0))
    (i32.store8 (i32.const 32) (i32.const 10))
    (call $write (local.get $stream) (i32.const 32) (i32.const 1) (i32.const 0))
    (call $drop_stream (local.get $stream))
    (call $body_finish (local.get $body) (i32.const 0) (i32.const 0) (i32.const 0))))
