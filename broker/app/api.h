/* broker/app/api.h - the REST API: which endpoint a request is, and who may
 * call it.
 *
 * Owns: the route table of every HTTP endpoint on the broker's port
 * (docs/rest-api.md): GET /api/health, /api/health/ready, /admin, /metrics,
 * /api/channels, /api/channels/{channel}[/history|/presence|/state], POST
 * /api/publish, /api/channels/{channel}/state, /api/admin/log, the
 * scoreboard adapter (/api/scoreboards/{game}/score|teams|reset) and the
 * seat map adapter (/api/events/{event}/seats|hold|confirm|release|
 * waitlist|waitlist/leave); the per-address REST rate limit and the API key
 * check in front of them. Does not own: the transport (net/http.c) or what
 * the endpoints do (the features of app/).
 * Loop thread only. */
#ifndef HERALD_API_H
#define HERALD_API_H

/* api_init() - route the broker's HTTP requests (installs struct http_hooks). */
void api_init(void);

#endif
