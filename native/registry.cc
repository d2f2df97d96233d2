#include "registry.h"

#include <set>

namespace bp {
namespace {

struct Registry {
  std::set<Stoppable*> live;
};
thread_local Registry* tls_registry = nullptr;

void cleanup(void* arg) {
  auto* r = static_cast<Registry*>(arg);
  for (Stoppable* s : r->live) s->Shutdown();
  r->live.clear();
  if (tls_registry == r) tls_registry = nullptr;
  delete r;
}

}  // namespace

void track(Napi::Env env, Stoppable* s) {
  if (!tls_registry) {
    tls_registry = new Registry();
    napi_add_env_cleanup_hook(env, cleanup, tls_registry);
  }
  tls_registry->live.insert(s);
}

void forget(Stoppable* s) {
  if (tls_registry) tls_registry->live.erase(s);
}

}  // namespace bp
