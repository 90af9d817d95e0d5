/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Libraries only some configurations use are opened when first needed, not
 * at start: libcurl (the Kubernetes API, for pod metadata) and libnats
 * (fleet mode). Linked, they and what they pull in (GnuTLS, Kerberos,
 * LDAP, p11-kit, ...) cost every agent ~4.5 MiB of resident memory.
 *
 * k8s.c and store_nats.c include this after <curl/curl.h> or
 * <nats/nats.h> (with MCPW_DL_CURL or MCPW_DL_NATS defined): their calls
 * then go through pointers that dynlib__curl()/dynlib__nats() fill. A new
 * call needs its function added to the list and to the redirects below.
 */
#ifndef MCPW_DYNLIB_H
#define MCPW_DYNLIB_H

#include <stddef.h>

/* 0 once the library's functions are all found; else -1 and why in err
 * (the library and package missing, or a symbol it lacks). Thread-safe. */
int dynlib__curl(char *err, size_t len);
int dynlib__nats(char *err, size_t len);

#define MCPW_DL_DECLARE(f) extern __typeof__(f) *mw_dl_##f;

#ifdef MCPW_DL_CURL
#define MCPW_DL_CURL_FUNCS(X) \
	X(curl_global_init) \
	X(curl_easy_init) \
	X(curl_easy_cleanup) \
	X(curl_easy_reset) \
	X(curl_easy_setopt) \
	X(curl_easy_getinfo) \
	X(curl_easy_escape) \
	X(curl_easy_strerror) \
	X(curl_free) \
	X(curl_multi_init) \
	X(curl_multi_cleanup) \
	X(curl_multi_add_handle) \
	X(curl_multi_remove_handle) \
	X(curl_multi_perform) \
	X(curl_multi_poll) \
	X(curl_multi_wakeup) \
	X(curl_multi_info_read) \
	X(curl_slist_append) \
	X(curl_slist_free_all)
MCPW_DL_CURL_FUNCS(MCPW_DL_DECLARE)
#ifndef MCPW_DL_NO_REDIRECT
/* curl.h wraps these two in macros that only check the argument count. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init (*mw_dl_curl_global_init)
#define curl_easy_init (*mw_dl_curl_easy_init)
#define curl_easy_cleanup (*mw_dl_curl_easy_cleanup)
#define curl_easy_reset (*mw_dl_curl_easy_reset)
#define curl_easy_setopt (*mw_dl_curl_easy_setopt)
#define curl_easy_getinfo (*mw_dl_curl_easy_getinfo)
#define curl_easy_escape (*mw_dl_curl_easy_escape)
#define curl_easy_strerror (*mw_dl_curl_easy_strerror)
#define curl_free (*mw_dl_curl_free)
#define curl_multi_init (*mw_dl_curl_multi_init)
#define curl_multi_cleanup (*mw_dl_curl_multi_cleanup)
#define curl_multi_add_handle (*mw_dl_curl_multi_add_handle)
#define curl_multi_remove_handle (*mw_dl_curl_multi_remove_handle)
#define curl_multi_perform (*mw_dl_curl_multi_perform)
#define curl_multi_poll (*mw_dl_curl_multi_poll)
#define curl_multi_wakeup (*mw_dl_curl_multi_wakeup)
#define curl_multi_info_read (*mw_dl_curl_multi_info_read)
#define curl_slist_append (*mw_dl_curl_slist_append)
#define curl_slist_free_all (*mw_dl_curl_slist_free_all)
#endif
#endif

#ifdef MCPW_DL_NATS
#define MCPW_DL_NATS_FUNCS(X) \
	X(natsConnection_Connect) \
	X(natsConnection_Close) \
	X(natsConnection_Destroy) \
	X(natsConnection_JetStream) \
	X(natsConnection_Status) \
	X(natsOptions_Create) \
	X(natsOptions_Destroy) \
	X(natsOptions_LoadCATrustedCertificates) \
	X(natsOptions_LoadCertificatesChain) \
	X(natsOptions_SetClosedCB) \
	X(natsOptions_SetDisconnectedCB) \
	X(natsOptions_SetErrorHandler) \
	X(natsOptions_SetFailRequestsOnDisconnect) \
	X(natsOptions_SetMaxPingsOut) \
	X(natsOptions_SetMaxReconnect) \
	X(natsOptions_SetName) \
	X(natsOptions_SetPingInterval) \
	X(natsOptions_SetReconnectJitter) \
	X(natsOptions_SetReconnectWait) \
	X(natsOptions_SetReconnectedCB) \
	X(natsOptions_SetRetryOnFailedConnect) \
	X(natsOptions_SetSecure) \
	X(natsOptions_SetTimeout) \
	X(natsOptions_SetURL) \
	X(natsOptions_SetUserCredentialsFromFiles) \
	X(natsStatus_GetText) \
	X(nats_GetLastError) \
	X(jsCtx_Destroy) \
	X(jsOptions_Init) \
	X(jsPubAck_Destroy) \
	X(jsPubOptions_Init) \
	X(jsStreamConfig_Init) \
	X(jsStreamInfo_Destroy) \
	X(js_AddStream) \
	X(js_CreateKeyValue) \
	X(js_KeyValue) \
	X(js_Publish) \
	X(kvConfig_Init) \
	X(kvEntry_Created) \
	X(kvEntry_Destroy) \
	X(kvEntry_Key) \
	X(kvEntry_Operation) \
	X(kvEntry_Revision) \
	X(kvEntry_Value) \
	X(kvEntry_ValueLen) \
	X(kvEntry_ValueString) \
	X(kvStatus_Destroy) \
	X(kvStatus_TTL) \
	X(kvStore_CreateString) \
	X(kvStore_Delete) \
	X(kvStore_Destroy) \
	X(kvStore_Get) \
	X(kvStore_PutString) \
	X(kvStore_Status) \
	X(kvStore_UpdateString) \
	X(kvStore_WatchAll) \
	X(kvWatcher_Destroy) \
	X(kvWatcher_Next) \
	X(kvWatcher_Stop)
MCPW_DL_NATS_FUNCS(MCPW_DL_DECLARE)
#ifndef MCPW_DL_NO_REDIRECT
#define natsConnection_Connect (*mw_dl_natsConnection_Connect)
#define natsConnection_Close (*mw_dl_natsConnection_Close)
#define natsConnection_Destroy (*mw_dl_natsConnection_Destroy)
#define natsConnection_JetStream (*mw_dl_natsConnection_JetStream)
#define natsConnection_Status (*mw_dl_natsConnection_Status)
#define natsOptions_Create (*mw_dl_natsOptions_Create)
#define natsOptions_Destroy (*mw_dl_natsOptions_Destroy)
#define natsOptions_LoadCATrustedCertificates (*mw_dl_natsOptions_LoadCATrustedCertificates)
#define natsOptions_LoadCertificatesChain (*mw_dl_natsOptions_LoadCertificatesChain)
#define natsOptions_SetClosedCB (*mw_dl_natsOptions_SetClosedCB)
#define natsOptions_SetDisconnectedCB (*mw_dl_natsOptions_SetDisconnectedCB)
#define natsOptions_SetErrorHandler (*mw_dl_natsOptions_SetErrorHandler)
#define natsOptions_SetFailRequestsOnDisconnect (*mw_dl_natsOptions_SetFailRequestsOnDisconnect)
#define natsOptions_SetMaxPingsOut (*mw_dl_natsOptions_SetMaxPingsOut)
#define natsOptions_SetMaxReconnect (*mw_dl_natsOptions_SetMaxReconnect)
#define natsOptions_SetName (*mw_dl_natsOptions_SetName)
#define natsOptions_SetPingInterval (*mw_dl_natsOptions_SetPingInterval)
#define natsOptions_SetReconnectJitter (*mw_dl_natsOptions_SetReconnectJitter)
#define natsOptions_SetReconnectWait (*mw_dl_natsOptions_SetReconnectWait)
#define natsOptions_SetReconnectedCB (*mw_dl_natsOptions_SetReconnectedCB)
#define natsOptions_SetRetryOnFailedConnect (*mw_dl_natsOptions_SetRetryOnFailedConnect)
#define natsOptions_SetSecure (*mw_dl_natsOptions_SetSecure)
#define natsOptions_SetTimeout (*mw_dl_natsOptions_SetTimeout)
#define natsOptions_SetURL (*mw_dl_natsOptions_SetURL)
#define natsOptions_SetUserCredentialsFromFiles (*mw_dl_natsOptions_SetUserCredentialsFromFiles)
#define natsStatus_GetText (*mw_dl_natsStatus_GetText)
#define nats_GetLastError (*mw_dl_nats_GetLastError)
#define jsCtx_Destroy (*mw_dl_jsCtx_Destroy)
#define jsOptions_Init (*mw_dl_jsOptions_Init)
#define jsPubAck_Destroy (*mw_dl_jsPubAck_Destroy)
#define jsPubOptions_Init (*mw_dl_jsPubOptions_Init)
#define jsStreamConfig_Init (*mw_dl_jsStreamConfig_Init)
#define jsStreamInfo_Destroy (*mw_dl_jsStreamInfo_Destroy)
#define js_AddStream (*mw_dl_js_AddStream)
#define js_CreateKeyValue (*mw_dl_js_CreateKeyValue)
#define js_KeyValue (*mw_dl_js_KeyValue)
#define js_Publish (*mw_dl_js_Publish)
#define kvConfig_Init (*mw_dl_kvConfig_Init)
#define kvEntry_Created (*mw_dl_kvEntry_Created)
#define kvEntry_Destroy (*mw_dl_kvEntry_Destroy)
#define kvEntry_Key (*mw_dl_kvEntry_Key)
#define kvEntry_Operation (*mw_dl_kvEntry_Operation)
#define kvEntry_Revision (*mw_dl_kvEntry_Revision)
#define kvEntry_Value (*mw_dl_kvEntry_Value)
#define kvEntry_ValueLen (*mw_dl_kvEntry_ValueLen)
#define kvEntry_ValueString (*mw_dl_kvEntry_ValueString)
#define kvStatus_Destroy (*mw_dl_kvStatus_Destroy)
#define kvStatus_TTL (*mw_dl_kvStatus_TTL)
#define kvStore_CreateString (*mw_dl_kvStore_CreateString)
#define kvStore_Delete (*mw_dl_kvStore_Delete)
#define kvStore_Destroy (*mw_dl_kvStore_Destroy)
#define kvStore_Get (*mw_dl_kvStore_Get)
#define kvStore_PutString (*mw_dl_kvStore_PutString)
#define kvStore_Status (*mw_dl_kvStore_Status)
#define kvStore_UpdateString (*mw_dl_kvStore_UpdateString)
#define kvStore_WatchAll (*mw_dl_kvStore_WatchAll)
#define kvWatcher_Destroy (*mw_dl_kvWatcher_Destroy)
#define kvWatcher_Next (*mw_dl_kvWatcher_Next)
#define kvWatcher_Stop (*mw_dl_kvWatcher_Stop)
#endif
#endif

#endif
