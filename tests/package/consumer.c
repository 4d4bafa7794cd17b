/* An out-of-tree program built against the installed quiver (pkg-config or
 * find_package): one GET, status and body checked. Usage: consumer URL */
#include <quiver.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    qv_session *s;
    if (qv_session_new(&s, NULL) != QV_OK) return 1;
    qv_future *f;
    qv_response *r;
    int ok = qv_get(s, &f, argv[1]) == QV_OK && qv_future_result(f, &r, 30000) == QV_OK &&
             qv_response_status(r) == 200 && strstr(qv_response_text(r), "\"url\"");
    printf("%s %s\n", qv_version(), ok ? "ok" : "FAILED");
    qv_future_release(f);
    qv_session_free(s);
    return ok ? 0 : 1;
}
