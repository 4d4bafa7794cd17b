// quiver.h from C++17: the header is extern "C" and its structs can be
// filled without C's compound literals. Usage: consumer_cpp URL
#include <quiver.h>

#include <cstdio>
#include <cstring>

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    qv_session *s = nullptr;
    qv_session_opts so{};
    so.size = sizeof so;
    so.executor_kind = QV_LOOP;
    if (qv_session_new(&s, &so) != QV_OK) return 1;

    const qv_header headers[] = {{"X-From", "c++"}, {nullptr, nullptr}};
    qv_request_opts o{};
    o.size = sizeof o;
    o.method = "GET";
    o.url = argv[1];
    o.headers = headers;
    qv_future *f = nullptr;
    qv_response *r = nullptr;
    bool ok = qv_request(s, &f, &o) == QV_OK && qv_future_result(f, &r, 30000) == QV_OK &&
              qv_response_status(r) == 200 && std::strstr(qv_response_text(r), "c++");
    std::printf("c++ %s\n", ok ? "ok" : "FAILED");
    qv_future_release(f);
    qv_session_free(s);
    return ok ? 0 : 1;
}
