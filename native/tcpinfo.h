// The kernel's TCP_INFO for a socket descriptor (native/tcpinfo.cc).
#pragma once
#include <napi.h>

namespace bp {
Napi::Value TcpInfo(const Napi::CallbackInfo& info);
}
