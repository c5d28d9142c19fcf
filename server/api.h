/* api.h - the HTTP API's endpoint groups, each registering its routes on
 * the server (server/http.h). main.c wires them; handlers run on the
 * thread pool and share only what srv_api holds. */
#ifndef SMOLDER_SRV_API_H
#define SMOLDER_SRV_API_H

#include "server/http.h"
#include "storage/storage.h"

typedef struct srv_api {
	st_db *db;
} srv_api;

/* GET /api/v1/query, /diff, /top, /range, /types, /labels,
 * /labels/{name}/values (server/api_query.c). */
int srv_api_query_routes(srv_http *h, srv_api *api);

/* POST /api/v1/ingest/pprof (server/api_ingest.c). */
int srv_api_ingest_routes(srv_http *h, srv_api *api);

#endif
