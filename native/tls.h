// TLS with the OpenSSL already inside the Node process. The addon never links libssl: every
// function is looked up at load time with dlsym in the process's global scope, where both the official
// Node binaries (OpenSSL linked in and exported) and distribution builds (libssl3 as a dependency of the
// executable) provide it. Without all of them, native TLS is unavailable and TLS runs on Node's own stack.
//
// One Session is one TLS connection. Its record I/O goes through a BIO of our own with two modes:
//  - fed (the protocol phase, Node owns the socket): TypeScript feeds ciphertext that Node read and
//    takes the ciphertext OpenSSL wrote, so the handshake, the HTTP/WebSocket upgrade and the RMBT lines
//    run on the JS thread through this session;
//  - fd (a bulk phase, the native loop owns the socket): the BIO reads and writes the descriptor itself,
//    on the stream's thread. Ciphertext buffered in one mode is served first in the other, so nothing is
//    lost at a hand-over.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct ssl_st;
struct ssl_ctx_st;
struct bio_st;

namespace bp {

// The record transport under one SSL*. Plain data; the BIO callbacks in tls.cc use it.
struct TlsIo {
  std::vector<uint8_t> in;  // ciphertext not yet given to OpenSSL: [in_off, in_len) (fed, or read from the fd)
  size_t in_off = 0;
  size_t in_len = 0;
  std::vector<uint8_t> out;  // ciphertext OpenSSL wrote and nobody sent yet
  size_t out_off = 0;
  int fd = -1;  // >= 0: fd mode
  int last_errno = 0;
  bool eof = false;  // fed mode: Node saw the TCP stream end
};

// Whether every OpenSSL function native TLS needs was found (and the OpenSSL is 3.x). Reason if not.
bool tls_available(std::string* why);

// Stream-thread side, for the loops in tcp_loop.cc. Results: > 0 bytes, 0 the peer closed (close_notify
// or TCP end), -1 with errno EAGAIN (nothing now: poll the fd) or another errno / a message in `err`.
long tls_read(ssl_st* ssl, TlsIo& io, uint8_t* buf, size_t len, std::string* err);
// Encrypts len bytes into io.out (never blocks; the caller sends io.out with tls_flush). -1 + err on error.
long tls_encrypt(ssl_st* ssl, const uint8_t* data, size_t len, std::string* err);
// Sends what io.out holds without blocking: 1 all sent, 0 would block (poll POLLOUT), -1 error (errno).
int tls_flush(TlsIo& io);

class TlsContext : public Napi::ObjectWrap<TlsContext> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit TlsContext(const Napi::CallbackInfo& info);
  ~TlsContext() override;
  ssl_ctx_st* ctx() const { return ctx_; }
  bool server() const { return server_; }
  bool verify() const { return verify_; }

 private:
  ssl_ctx_st* ctx_ = nullptr;
  bool server_ = false;
  bool verify_ = true;
};

class TlsSession : public Napi::ObjectWrap<TlsSession> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit TlsSession(const Napi::CallbackInfo& info);
  ~TlsSession() override;
  ssl_st* ssl() const { return ssl_; }
  TlsIo& io() { return io_; }
  // A run holds the session: JS must not touch it until the run gave it back.
  bool lent = false;

 private:
  Napi::Value Handshake(const Napi::CallbackInfo& info);
  Napi::Value Feed(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value TakeOut(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Shutdown(const Napi::CallbackInfo& info);
  Napi::Value Free(const Napi::CallbackInfo& info);
  bool Usable(Napi::Env env);
  void Release();

  ssl_st* ssl_ = nullptr;
  bio_st* bio_ = nullptr;
  TlsIo io_;
  Napi::ObjectReference ctx_ref_;
  std::string host_;  // what the certificate is checked against (named in errors)
  bool done_ = false;
};

}  // namespace bp
