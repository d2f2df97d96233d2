// Native TLS over the process's own OpenSSL (see tls.h). Every OpenSSL function is a weak reference:
// the dynamic linker binds it to the process's OpenSSL when there is one and to null when there is not,
// so this addon loads (and the plain engine works) in a Node without OpenSSL symbols too, and needs no
// libdl (dlsym would pull in a glibc 2.34 symbol version, above the 2.17 floor the prebuilds keep).
// Calls go through the table `f`, filled once and checked for nulls.
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace bp {
namespace {

#define BP_SSL_FUNCS(X)                                                                                      \
  X(OpenSSL_version_num)                                                                                     \
  X(TLS_method) X(SSL_CTX_new) X(SSL_CTX_free) X(SSL_CTX_ctrl) X(SSL_CTX_set_options) X(SSL_CTX_set_verify) \
  X(SSL_CTX_get_cert_store) X(X509_STORE_add_cert) X(SSL_CTX_set_ciphersuites) X(SSL_CTX_set_cipher_list)  \
  X(SSL_CTX_use_certificate) X(SSL_CTX_use_PrivateKey) X(SSL_CTX_check_private_key) X(BIO_new_mem_buf)      \
  X(BIO_free) X(PEM_read_bio_X509) X(PEM_read_bio_PrivateKey) X(X509_free) X(EVP_PKEY_free) X(SSL_new)     \
  X(SSL_free) X(SSL_set_bio) X(SSL_set_connect_state) X(SSL_set_accept_state) X(SSL_ctrl) X(SSL_set1_host)  \
  X(SSL_set_hostflags) X(SSL_get0_param) X(X509_VERIFY_PARAM_set1_ip_asc) X(SSL_do_handshake)              \
  X(SSL_read_ex) X(SSL_write_ex) X(SSL_get_error) X(SSL_shutdown) X(SSL_get_verify_result)                  \
  X(X509_verify_cert_error_string) X(SSL_get_version) X(SSL_get_current_cipher) X(SSL_CIPHER_standard_name) \
  X(BIO_meth_new) X(BIO_meth_set_write) X(BIO_meth_set_read) X(BIO_meth_set_ctrl) X(BIO_meth_set_create)   \
  X(BIO_meth_set_destroy) X(BIO_new) X(BIO_set_data) X(BIO_get_data) X(BIO_set_init) X(BIO_set_flags)      \
  X(BIO_clear_flags) X(BIO_get_new_index) X(ERR_get_error) X(ERR_error_string_n) X(ERR_clear_error)

#define BP_STR(x) #x
#define BP_WEAK(n) _Pragma(BP_STR(weak n))
BP_SSL_FUNCS(BP_WEAK)

struct Fns {
#define BP_DECL(n) decltype(&::n) n = nullptr;
  BP_SSL_FUNCS(BP_DECL)
#undef BP_DECL
};

Fns f;
bool loaded = false;
std::string missing;
BIO_METHOD* method = nullptr;

// Ciphertext read from the descriptor per recv() in fd mode (OpenSSL then takes records from it).
constexpr size_t kInCap = 256 * 1024;

int bio_create(BIO* b) {
  f.BIO_set_init(b, 1);
  return 1;
}
int bio_destroy(BIO*) { return 1; }

// Reads ciphertext: what is buffered first, then (fd mode) the descriptor; never blocks.
int bio_read(BIO* b, char* buf, int len) {
  auto* io = static_cast<TlsIo*>(f.BIO_get_data(b));
  f.BIO_clear_flags(b, BIO_FLAGS_RWS | BIO_FLAGS_SHOULD_RETRY);
  if (len <= 0) return 0;
  if (io->in_off == io->in_len && io->fd >= 0) {
    io->in_off = io->in_len = 0;
    if (io->in.size() < kInCap) io->in.resize(kInCap);
    for (;;) {
      ssize_t n = recv(io->fd, io->in.data(), io->in.size(), MSG_DONTWAIT);
      if (n > 0) {
        io->in_len = static_cast<size_t>(n);
        break;
      }
      if (n == 0) {
        io->eof = true;
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        f.BIO_set_flags(b, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY);
        return -1;
      }
      io->last_errno = errno;
      return -1;
    }
  }
  if (io->in_off < io->in_len) {
    size_t n = std::min(static_cast<size_t>(len), io->in_len - io->in_off);
    std::memcpy(buf, io->in.data() + io->in_off, n);
    io->in_off += n;
    return static_cast<int>(n);
  }
  if (io->eof) return 0;
  f.BIO_set_flags(b, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY);
  return -1;
}

// Writes ciphertext into io->out in both modes: the loop (or TypeScript) sends it in large blocks.
int bio_write(BIO* b, const char* buf, int len) {
  auto* io = static_cast<TlsIo*>(f.BIO_get_data(b));
  f.BIO_clear_flags(b, BIO_FLAGS_RWS | BIO_FLAGS_SHOULD_RETRY);
  io->out.insert(io->out.end(), buf, buf + len);
  return len;
}

long bio_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

// Once per process (a worker thread loading the addon shares the table): a static in load().
void load_once() {
#define BP_LOAD(n) \
  f.n = &::n;        \
  if (!f.n && missing.empty()) missing = #n;
  BP_SSL_FUNCS(BP_LOAD)
#undef BP_LOAD
  if (!missing.empty()) {
    missing = "this Node has no OpenSSL function " + missing + " for addons";
    return;
  }
  if (f.OpenSSL_version_num() < 0x30000000UL) {
    missing = "this Node's OpenSSL is older than 3.0";
    return;
  }
  method = f.BIO_meth_new(f.BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "bandwidth-probe");
  if (!method) {
    missing = "BIO_meth_new failed";
    return;
  }
  f.BIO_meth_set_read(method, bio_read);
  f.BIO_meth_set_write(method, bio_write);
  f.BIO_meth_set_ctrl(method, bio_ctrl);
  f.BIO_meth_set_create(method, bio_create);
  f.BIO_meth_set_destroy(method, bio_destroy);
  loaded = true;
}

bool load() {
  // a function-local static is initialised once, thread-safely (no pthread_once: a glibc 2.34 symbol)
  static const bool once = (load_once(), true);
  (void)once;
  return loaded;
}

// OpenSSL's error queue of this thread as one line ("" when empty); clears it.
std::string ssl_errors() {
  std::string out;
  for (unsigned long e; (e = f.ERR_get_error()) != 0;) {
    char buf[256];
    f.ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

Napi::Error tls_error(Napi::Env env, const std::string& code, const std::string& msg) {
  return Napi::Error::New(env, code + ": " + msg);
}

// All PEM certificates in `pem` (a bundle or a single one).
std::vector<X509*> read_certs(const std::string& pem) {
  std::vector<X509*> out;
  BIO* b = f.BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!b) return out;
  for (X509* x; (x = f.PEM_read_bio_X509(b, nullptr, nullptr, nullptr)) != nullptr;) out.push_back(x);
  f.BIO_free(b);
  f.ERR_clear_error();  // the end of the bundle reads as an error
  return out;
}

}  // namespace

bool tls_available(std::string* why) {
  bool ok = load();
  if (!ok && why) *why = missing;
  return ok;
}

long tls_read(SSL* ssl, TlsIo& io, uint8_t* buf, size_t len, std::string* err) {
  f.ERR_clear_error();
  size_t n = 0;
  if (f.SSL_read_ex(ssl, buf, len, &n) == 1) return static_cast<long>(n);
  switch (f.SSL_get_error(ssl, 0)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    case SSL_ERROR_SYSCALL:
      if (io.eof || io.last_errno == 0) return 0;
      errno = io.last_errno;
      if (err) *err = std::strerror(io.last_errno);
      return -1;
    default:
      if (err) *err = "TLS: " + ssl_errors();
      errno = EPROTO;
      return -1;
  }
}

long tls_encrypt(SSL* ssl, const uint8_t* data, size_t len, std::string* err) {
  f.ERR_clear_error();
  size_t n = 0;
  if (f.SSL_write_ex(ssl, data, len, &n) == 1) return static_cast<long>(n);
  if (err) *err = "TLS: " + ssl_errors();
  return -1;
}

int tls_flush(TlsIo& io) {
  while (io.out_off < io.out.size()) {
    ssize_t n = send(io.fd, io.out.data() + io.out_off, io.out.size() - io.out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      io.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    io.last_errno = n < 0 ? errno : EPIPE;
    errno = io.last_errno;
    return -1;
  }
  io.out.clear();
  io.out_off = 0;
  return 1;
}

// --- TlsContext ------------------------------------------------------------------------------------

Napi::Function TlsContext::Define(Napi::Env env) { return DefineClass(env, "TlsContext", {}); }

// new TlsContext({server, verify, roots: [pem], ciphersuites, cipherList, cert, key}).
TlsContext::TlsContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TlsContext>(info) {
  Napi::Env env = info.Env();
  if (!load()) {
    tls_error(env, "BP_ERR_ENGINE", missing).ThrowAsJavaScriptException();
    return;
  }
  Napi::Object o = info[0].As<Napi::Object>();
  server_ = o.Get("server").ToBoolean().Value();
  verify_ = o.Get("verify").ToBoolean().Value();
  f.ERR_clear_error();
  ctx_ = f.SSL_CTX_new(f.TLS_method());
  if (!ctx_) {
    tls_error(env, "BP_ERR_ENGINE", "SSL_CTX_new: " + ssl_errors()).ThrowAsJavaScriptException();
    return;
  }
  // TLS >= 1.2 as the js path and RMBTD (specs/rmbt.md §2.2); no renegotiation; no compression.
  f.SSL_CTX_ctrl(ctx_, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, nullptr);
  f.SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Partial writes: a big chunk is encrypted record by record into the BIO and sent in large blocks.
  f.SSL_CTX_ctrl(ctx_, SSL_CTRL_MODE, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, nullptr);
  auto str = [&](const char* k) {
    Napi::Value v = o.Get(k);
    return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
  };
  std::string suites = str("ciphersuites"), list = str("cipherList");
  if (!suites.empty() && f.SSL_CTX_set_ciphersuites(ctx_, suites.c_str()) != 1) {
    tls_error(env, "BP_ERR_CONFIG", "no usable TLS 1.3 cipher suite in " + suites).ThrowAsJavaScriptException();
    return;
  }
  if (!list.empty() && f.SSL_CTX_set_cipher_list(ctx_, list.c_str()) != 1) {
    tls_error(env, "BP_ERR_CONFIG", "no usable TLS 1.2 cipher in " + list).ThrowAsJavaScriptException();
    return;
  }
  if (server_) {
    std::vector<X509*> chain = read_certs(str("cert"));
    std::string keyPem = str("key");
    BIO* kb = f.BIO_new_mem_buf(keyPem.data(), static_cast<int>(keyPem.size()));
    EVP_PKEY* key = kb ? f.PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr) : nullptr;
    if (kb) f.BIO_free(kb);
    bool ok = !chain.empty() && key && f.SSL_CTX_use_certificate(ctx_, chain[0]) == 1 &&
              f.SSL_CTX_use_PrivateKey(ctx_, key) == 1 && f.SSL_CTX_check_private_key(ctx_) == 1;
    for (size_t i = 1; ok && i < chain.size(); i++) {
      // SSL_CTX_add_extra_chain_cert takes ownership of the certificate
      if (f.SSL_CTX_ctrl(ctx_, SSL_CTRL_EXTRA_CHAIN_CERT, 0, chain[i]) == 1) chain[i] = nullptr;
    }
    for (X509* x : chain)
      if (x) f.X509_free(x);
    if (key) f.EVP_PKEY_free(key);
    if (!ok) {
      tls_error(env, "BP_ERR_CONFIG", "the certificate or key does not load: " + ssl_errors()).ThrowAsJavaScriptException();
      return;
    }
    f.SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  } else {
    if (verify_) {
      X509_STORE* store = f.SSL_CTX_get_cert_store(ctx_);
      Napi::Value roots = o.Get("roots");
      if (roots.IsArray()) {
        Napi::Array a = roots.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); i++) {
          for (X509* x : read_certs(a.Get(i).As<Napi::String>().Utf8Value())) {
            f.X509_STORE_add_cert(store, x);  // the store takes its own reference
            f.X509_free(x);
          }
        }
      }
      f.ERR_clear_error();  // duplicates in the store are not errors
    }
    f.SSL_CTX_set_verify(ctx_, verify_ ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  }
}

TlsContext::~TlsContext() {
  if (ctx_) f.SSL_CTX_free(ctx_);
}

// --- TlsSession ------------------------------------------------------------------------------------

Napi::Function TlsSession::Define(Napi::Env env) {
  return DefineClass(env, "TlsSession",
                     {InstanceMethod("handshake", &TlsSession::Handshake), InstanceMethod("feed", &TlsSession::Feed),
                      InstanceMethod("read", &TlsSession::Read), InstanceMethod("write", &TlsSession::Write),
                      InstanceMethod("takeOut", &TlsSession::TakeOut), InstanceMethod("info", &TlsSession::Info),
                      InstanceMethod("shutdown", &TlsSession::Shutdown), InstanceMethod("free", &TlsSession::Free)});
}

// new TlsSession(context, host?): a client session checks `host` (a name, or an IP against IP SANs) when
// its context verifies; a server session answers whatever the client asks for.
TlsSession::TlsSession(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TlsSession>(info) {
  Napi::Env env = info.Env();
  TlsContext* c = Napi::ObjectWrap<TlsContext>::Unwrap(info[0].As<Napi::Object>());
  if (!c || !c->ctx()) {
    tls_error(env, "BP_ERR_ENGINE", "no TLS context").ThrowAsJavaScriptException();
    return;
  }
  ctx_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  f.ERR_clear_error();
  ssl_ = f.SSL_new(c->ctx());
  bio_ = ssl_ ? f.BIO_new(method) : nullptr;
  if (!ssl_ || !bio_) {
    tls_error(env, "BP_ERR_ENGINE", "SSL_new: " + ssl_errors()).ThrowAsJavaScriptException();
    return;
  }
  f.BIO_set_data(bio_, &io_);
  f.SSL_set_bio(ssl_, bio_, bio_);  // one BIO both ways; SSL_free frees it
  if (c->server()) {
    f.SSL_set_accept_state(ssl_);
    return;
  }
  f.SSL_set_connect_state(ssl_);
  std::string host = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : std::string();
  host_ = host;
  bool ip = !host.empty() && (host.find(':') != std::string::npos || host.find_first_not_of("0123456789.") == std::string::npos);
  if (!host.empty() && !ip) {
    // SNI for names only (RFC 6066 §3 forbids literal addresses)
    f.SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(host.c_str()));
  }
  if (c->verify() && !host.empty()) {
    f.SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = ip ? f.X509_VERIFY_PARAM_set1_ip_asc(f.SSL_get0_param(ssl_), host.c_str()) : f.SSL_set1_host(ssl_, host.c_str());
    if (ok != 1) {
      tls_error(env, "BP_ERR_CONFIG", "cannot check the certificate against " + host).ThrowAsJavaScriptException();
      return;
    }
  }
}

TlsSession::~TlsSession() { Release(); }

void TlsSession::Release() {
  if (ssl_) f.SSL_free(ssl_);
  ssl_ = nullptr;
  bio_ = nullptr;
  // the record buffers too (up to 256 KiB each), not only when the JS object is collected
  std::vector<uint8_t>().swap(io_.in);
  std::vector<uint8_t>().swap(io_.out);
  io_.in_off = io_.in_len = io_.out_off = 0;
}

bool TlsSession::Usable(Napi::Env env) {
  if (!ssl_) {
    tls_error(env, "BP_ERR_ENGINE", "the TLS session was freed").ThrowAsJavaScriptException();
    return false;
  }
  if (lent) {
    tls_error(env, "BP_ERR_ENGINE", "the TLS session is lent to a native run").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// handshake(): true when done, false when it needs the peer's next bytes; throws a coded error.
Napi::Value TlsSession::Handshake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(env)) return env.Undefined();
  if (done_) return Napi::Boolean::New(env, true);
  f.ERR_clear_error();
  int r = f.SSL_do_handshake(ssl_);
  if (r == 1) {
    done_ = true;
    return Napi::Boolean::New(env, true);
  }
  int e = f.SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Napi::Boolean::New(env, false);
  long verify = f.SSL_get_verify_result(ssl_);
  std::string errs = ssl_errors();
  if (verify != X509_V_OK) {
    // OpenSSL's verify result as a sentence ("self-signed certificate", "certificate has expired",
    // "hostname mismatch"), not a number
    std::string why = f.X509_verify_cert_error_string(verify);
    if (!host_.empty()) why += " (connecting to " + host_ + ")";
    tls_error(env, "BP_ERR_TLS", "the server's certificate is not trusted: " + why).ThrowAsJavaScriptException();
  } else if (errs.empty() && (io_.eof || e == SSL_ERROR_SYSCALL)) {
    tls_error(env, "BP_ERR_PEER_CLOSED", "the peer closed the connection during the TLS handshake").ThrowAsJavaScriptException();
  } else {
    tls_error(env, "BP_ERR_TLS", "TLS handshake failed: " + (errs.empty() ? std::string("unknown error") : errs))
        .ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// feed(buf | null): ciphertext Node read (null: the TCP stream ended).
Napi::Value TlsSession::Feed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(env)) return env.Undefined();
  if (!info[0].IsBuffer()) {
    io_.eof = true;
    return env.Undefined();
  }
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  size_t n = b.Length();
  if (io_.in_off == io_.in_len) io_.in_off = io_.in_len = 0;
  if (io_.in_len + n > io_.in.size()) {
    // compact, then grow if one feed is larger than the buffer
    std::memmove(io_.in.data(), io_.in.data() + io_.in_off, io_.in_len - io_.in_off);
    io_.in_len -= io_.in_off;
    io_.in_off = 0;
    if (io_.in_len + n > io_.in.size()) io_.in.resize(io_.in_len + n);
  }
  std::memcpy(io_.in.data() + io_.in_len, b.Data(), n);
  io_.in_len += n;
  return env.Undefined();
}

// read(): the plaintext of every complete record fed so far (an empty Buffer when none), or null once the
// peer closed the TLS session; throws a coded error when the stream is corrupt.
Napi::Value TlsSession::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(env)) return env.Undefined();
  std::vector<uint8_t> plain;
  uint8_t buf[16384];
  for (;;) {
    std::string err;
    long n = tls_read(ssl_, io_, buf, sizeof buf, &err);
    if (n > 0) {
      plain.insert(plain.end(), buf, buf + n);
      continue;
    }
    if (n == 0) {
      if (plain.empty()) return env.Null();
      break;  // the close is seen on the next read
    }
    if (errno == EAGAIN) break;
    tls_error(env, errno == EPROTO ? "BP_ERR_TLS" : "BP_ERR_PEER_CLOSED", err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Buffer<uint8_t>::Copy(env, plain.data(), plain.size());
}

// write(buf): encrypts into the outbound ciphertext (takeOut() gives it to Node).
Napi::Value TlsSession::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(env)) return env.Undefined();
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  size_t off = 0;
  while (off < b.Length()) {
    std::string err;
    long n = tls_encrypt(ssl_, b.Data() + off, b.Length() - off, &err);
    if (n <= 0) {
      tls_error(env, "BP_ERR_TLS", err).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    off += static_cast<size_t>(n);
  }
  return env.Undefined();
}

// takeOut(): the ciphertext to send, or undefined when there is none.
Napi::Value TlsSession::TakeOut(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(env) || io_.out_off >= io_.out.size()) return env.Undefined();
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::Copy(env, io_.out.data() + io_.out_off, io_.out.size() - io_.out_off);
  io_.out.clear();
  io_.out_off = 0;
  return out;
}

// info(): {version, cipher} of the established session (IANA cipher name, as Node's standardName).
Napi::Value TlsSession::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  if (!ssl_ || !done_) return o;
  o.Set("version", Napi::String::New(env, f.SSL_get_version(ssl_)));
  const SSL_CIPHER* c = f.SSL_get_current_cipher(ssl_);
  const char* name = c ? f.SSL_CIPHER_standard_name(c) : nullptr;
  if (name) o.Set("cipher", Napi::String::New(env, name));
  return o;
}

// shutdown(): queues close_notify (takeOut() gives it to Node).
Napi::Value TlsSession::Shutdown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ssl_ && !lent && done_) {
    f.ERR_clear_error();
    f.SSL_shutdown(ssl_);
    f.ERR_clear_error();
  }
  return env.Undefined();
}

// free(): releases the session now instead of at garbage collection (never while lent).
Napi::Value TlsSession::Free(const Napi::CallbackInfo& info) {
  if (!lent) Release();
  return info.Env().Undefined();
}

}  // namespace bp
