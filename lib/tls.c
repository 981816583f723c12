/*
 * tls.c: the per-launch certificate authority and the certificates it
 * issues, made with mbedTLS (the library under NNG's TLS).  It produces PEM
 * strings (and, when a file is wanted, owner-only files); transport.c, the
 * only NNG user, hands them to NNG's TLS configuration.  Nothing here calls NNG.
 *
 * Every launch makes a fresh CA: an EC P-256 key (fast to make and to sign
 * with) and a self-signed X.509 v3 certificate valid from an hour ago (clocks
 * on a cluster drift) to MIRAI__TLS_DAYS days ahead.  The CA's key never
 * leaves this process; peers get the CA certificate and a leaf certificate
 * with its own key.
 *
 * Leaves name one DNS name, in subjectAltName and in the CN.  Peers are
 * mostly reached by IP address, and mbedTLS 2.28 does not check IP
 * addresses in certificates, so a dialer verifies the fixed name
 * MIRAI__TLS_NAME instead of the address it dialed: what proves the peer is
 * the launch's is the signature of the launch's CA.
 *
 * mbedTLS 2.28 has no writer for subjectAltName or extendedKeyUsage (3.x
 * added them): both extensions are built here as DER and added with
 * mbedtls_x509write_crt_set_extension().
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509_crt.h>

#include "internal.h"

/* Big enough for one P-256 certificate or key in PEM (about 700 and 230
 * bytes) with the longest DNS name. */
#define PEM_MAX 4096
/* RFC 5280's upper bound for a common name. */
#define CN_MAX 64
#define DNS_MAX 253

/* What a leaf needs of the CA that issuing changes or must keep secret:
 * behind a pointer, so a const CA can still issue. */
typedef struct ca_secret {
	pthread_mutex_t mtx; /* one issue at a time per CA */
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_pk_context key;
} ca_secret;

struct mirai__tls_ca {
	ca_secret *sec;
	char subject[CN_MAX + 4];   /* "CN=..." */
	char not_before[16];        /* YYYYMMDDhhmmss, UTC */
	char not_after[16];
	char *pem;                  /* the CA certificate */
};

/* err gets "tls: STEP: mbedTLS's text (-0xNNNN)"; returns MIRAI_ECRYPTO. */
static int
crypto_fail(mirai_errmsg *err, const char *step, int rv)
{
	char text[160];

	mbedtls_strerror(rv, text, sizeof text);
	return mirai__fail(err, MIRAI_ECRYPTO, "tls: %s: %s (-0x%04x)", step,
	    text, (unsigned) -rv);
}

/* Letters, digits and hyphens in dot-separated labels of 1-63 characters,
 * no hyphen at either end of a label: what a dNSName may hold, and nothing
 * mbedTLS's subject-name parser would read as syntax. */
static int
dns_name_ok(const char *s)
{
	size_t len = strlen(s), label = 0;

	if (len == 0 || len > DNS_MAX) {
		return 0;
	}
	for (size_t i = 0; i <= len; i++) {
		char c = s[i];

		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-') {
				return 0;
			}
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || (c == '-' && label > 0)) {
			label++;
		} else {
			return 0;
		}
	}
	return 1;
}

/* A CA's common name: printable, without the characters (',', '=', '+',
 * quotes, backslash) that mbedTLS's subject-name parser treats as syntax. */
static int
cn_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > CN_MAX) {
		return 0;
	}
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || strchr(" ._:-", c) != NULL)) {
			return 0;
		}
	}
	return 1;
}

/* t as mbedTLS's validity format. */
static void
utc_stamp(char *buf, size_t len, time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y%m%d%H%M%S", &tm);
}

/* A fresh P-256 key into key (initialized by the caller). */
static int
gen_key(mbedtls_pk_context *key, mbedtls_ctr_drbg_context *drbg,
    mirai_errmsg *err)
{
	int rv;

	if ((rv = mbedtls_pk_setup(key,
		 mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY))) != 0) {
		return crypto_fail(err, "setting up an EC key", rv);
	}
	if ((rv = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1,
		 mbedtls_pk_ec(*key), mbedtls_ctr_drbg_random, drbg)) != 0) {
		return crypto_fail(err, "generating a P-256 key", rv);
	}
	return 0;
}

/*
 * The parts every certificate of a launch shares: a random 128-bit
 * serial, the CA as issuer and signer, SHA-256, the CA's validity, and both
 * key identifiers.  subject_key is the certificate's own key.
 */
static int
crt_common(mbedtls_x509write_cert *crt, const mirai__tls_ca *ca,
    const char *subject, mbedtls_pk_context *subject_key, mirai_errmsg *err)
{
	mbedtls_mpi serial;
	int rv;

	mbedtls_x509write_crt_set_version(crt, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(crt, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(crt, subject_key);
	mbedtls_x509write_crt_set_issuer_key(crt, &ca->sec->key);

	/* Random, so two launches' certificates never share an
	 * issuer+serial pair; 16 bytes stays under RFC 5280's 20. */
	mbedtls_mpi_init(&serial);
	rv = mbedtls_mpi_fill_random(&serial, 16, mbedtls_ctr_drbg_random,
	    &ca->sec->drbg);
	if (rv == 0) {
		rv = mbedtls_x509write_crt_set_serial(crt, &serial);
	}
	mbedtls_mpi_free(&serial);
	if (rv != 0) {
		return crypto_fail(err, "setting a random serial number", rv);
	}
	if ((rv = mbedtls_x509write_crt_set_validity(crt, ca->not_before,
		 ca->not_after)) != 0) {
		return crypto_fail(err, "setting the validity", rv);
	}
	if ((rv = mbedtls_x509write_crt_set_subject_name(crt, subject)) != 0) {
		return crypto_fail(err, "setting the subject name", rv);
	}
	if ((rv = mbedtls_x509write_crt_set_issuer_name(crt, ca->subject)) !=
	    0) {
		return crypto_fail(err, "setting the issuer name", rv);
	}
	if ((rv = mbedtls_x509write_crt_set_subject_key_identifier(crt)) != 0 ||
	    (rv = mbedtls_x509write_crt_set_authority_key_identifier(crt)) !=
		0) {
		return crypto_fail(err, "setting the key identifiers", rv);
	}
	return 0;
}

/* Sign crt into a malloc'd PEM string. */
static int
crt_pem(mbedtls_x509write_cert *crt, const mirai__tls_ca *ca, char **out,
    mirai_errmsg *err)
{
	unsigned char buf[PEM_MAX];
	int rv;

	if ((rv = mbedtls_x509write_crt_pem(crt, buf, sizeof buf,
		 mbedtls_ctr_drbg_random, &ca->sec->drbg)) != 0) {
		return crypto_fail(err, "signing the certificate", rv);
	}
	if ((*out = mirai__strdup((const char *) buf)) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "tls: out of memory");
	}
	return 0;
}

/*
 * subjectAltName with one dNSName, as DER:
 *   SEQUENCE { [2] IMPLICIT IA5String name }
 * and extendedKeyUsage serverAuth + clientAuth:
 *   SEQUENCE { OID id-kp-serverAuth, OID id-kp-clientAuth }
 * mbedTLS's asn1 writers fill buffers from the end backwards.  Returns 0 or
 * mbedTLS's (negative) error code, as MBEDTLS_ASN1_CHK_ADD does.
 */
static int
leaf_extensions(mbedtls_x509write_cert *crt, const char *dns_name)
{
	unsigned char san[DNS_MAX + 16], eku[32], *p;
	size_t len = 0;
	int ret; /* the name MBEDTLS_ASN1_CHK_ADD uses */

	p = san + sizeof san;
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&p, san,
	    (const unsigned char *) dns_name, strlen(dns_name)));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, san, len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, san,
	    MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, san, len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, san,
	    MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
	if ((ret = mbedtls_x509write_crt_set_extension(crt,
		 MBEDTLS_OID_SUBJECT_ALT_NAME,
		 MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, p, len)) !=
	    0) {
		return ret;
	}

	len = 0;
	p = eku + sizeof eku;
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, eku,
	    MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, eku,
	    MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, eku, len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, eku,
	    MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
	return mbedtls_x509write_crt_set_extension(crt,
	    MBEDTLS_OID_EXTENDED_KEY_USAGE,
	    MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0, p, len);
}

int
mirai__tls_ca_create(mirai__tls_ca **out, const char *cn, mirai_errmsg *err)
{
	static const char pers[] = "mirai launch CA";
	mirai__tls_ca *ca;
	mbedtls_x509write_cert crt;
	time_t now = time(NULL);
	int rv;

	if (out == NULL || cn == NULL || !cn_ok(cn)) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "tls: the CA's name must be 1-%d letters, digits, "
		    "spaces or ._:-",
		    CN_MAX);
	}
	if ((ca = calloc(1, sizeof *ca)) == NULL ||
	    (ca->sec = calloc(1, sizeof *ca->sec)) == NULL) {
		free(ca);
		return mirai__fail(err, MIRAI_ENOMEM, "tls: out of memory");
	}
	pthread_mutex_init(&ca->sec->mtx, NULL);
	mbedtls_entropy_init(&ca->sec->entropy);
	mbedtls_ctr_drbg_init(&ca->sec->drbg);
	mbedtls_pk_init(&ca->sec->key);
	snprintf(ca->subject, sizeof ca->subject, "CN=%s", cn);
	utc_stamp(ca->not_before, sizeof ca->not_before, now - 3600);
	utc_stamp(ca->not_after, sizeof ca->not_after,
	    now + (time_t) MIRAI__TLS_DAYS * 86400);

	if ((rv = mbedtls_ctr_drbg_seed(&ca->sec->drbg, mbedtls_entropy_func,
		 &ca->sec->entropy, (const unsigned char *) pers,
		 sizeof pers - 1)) != 0) {
		rv = crypto_fail(err, "seeding the random generator", rv);
		goto fail;
	}
	if ((rv = gen_key(&ca->sec->key, &ca->sec->drbg, err)) != 0) {
		goto fail;
	}

	mbedtls_x509write_crt_init(&crt);
	rv = crt_common(&crt, ca, ca->subject, &ca->sec->key, err);
	if (rv == 0 &&
	    ((rv = mbedtls_x509write_crt_set_basic_constraints(&crt, 1, 0)) !=
		    0 ||
		(rv = mbedtls_x509write_crt_set_key_usage(&crt,
		     MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN)) !=
		    0)) {
		rv = crypto_fail(err, "setting the CA's constraints", rv);
	}
	if (rv == 0) {
		rv = crt_pem(&crt, ca, &ca->pem, err);
	}
	mbedtls_x509write_crt_free(&crt);
	if (rv != 0) {
		goto fail;
	}
	*out = ca;
	return 0;
fail:
	mirai__tls_ca_destroy(ca);
	return rv;
}

int
mirai__tls_cert_issue(const mirai__tls_ca *ca, const char *dns_name,
    char **cert_pem, char **key_pem, mirai_errmsg *err)
{
	mbedtls_x509write_cert crt;
	mbedtls_pk_context key;
	unsigned char buf[PEM_MAX];
	char subject[DNS_MAX + 4]; /* "CN=" and at most CN_MAX (the size
				    * keeps -Wformat-truncation quiet) */
	char *cert = NULL;
	int rv;

	if (ca == NULL || cert_pem == NULL || key_pem == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "tls: no CA or no output");
	}
	if (dns_name == NULL || !dns_name_ok(dns_name)) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "tls: '%s' is not a DNS name (labels of letters, digits "
		    "and hyphens)",
		    dns_name != NULL ? dns_name : "(null)");
	}
	/* The CN only repeats the name for people reading the certificate
	 * (verification reads subjectAltName); it has a 64-character
	 * limit that the DNS name does not. */
	snprintf(subject, sizeof subject, "CN=%s",
	    strlen(dns_name) <= CN_MAX ? dns_name : "mirai");

	mbedtls_pk_init(&key);
	mbedtls_x509write_crt_init(&crt);
	pthread_mutex_lock(&ca->sec->mtx);
	rv = gen_key(&key, &ca->sec->drbg, err);
	if (rv == 0) {
		rv = crt_common(&crt, ca, subject, &key, err);
	}
	if (rv == 0 &&
	    ((rv = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1)) !=
		    0 ||
		(rv = mbedtls_x509write_crt_set_key_usage(&crt,
		     MBEDTLS_X509_KU_DIGITAL_SIGNATURE)) != 0)) {
		rv = crypto_fail(err, "setting the leaf's constraints", rv);
	}
	if (rv == 0 && (rv = leaf_extensions(&crt, dns_name)) != 0) {
		rv = crypto_fail(err, "adding subjectAltName and "
				      "extendedKeyUsage", rv);
	}
	if (rv == 0) {
		rv = crt_pem(&crt, ca, &cert, err);
	}
	pthread_mutex_unlock(&ca->sec->mtx);
	mbedtls_x509write_crt_free(&crt);

	if (rv == 0 && (rv = mbedtls_pk_write_key_pem(&key, buf, sizeof buf)) !=
	    0) {
		rv = crypto_fail(err, "writing the key as PEM", rv);
	}
	if (rv == 0 && (*key_pem = mirai__strdup((const char *) buf)) == NULL) {
		rv = mirai__fail(err, MIRAI_ENOMEM, "tls: out of memory");
	}
	mbedtls_platform_zeroize(buf, sizeof buf);
	mbedtls_pk_free(&key);
	if (rv != 0) {
		free(cert);
		return rv;
	}
	*cert_pem = cert;
	return 0;
}

const char *
mirai__tls_ca_pem(const mirai__tls_ca *ca)
{
	return ca != NULL ? ca->pem : NULL;
}

void
mirai__tls_ca_destroy(mirai__tls_ca *ca)
{
	if (ca == NULL) {
		return;
	}
	if (ca->sec != NULL) {
		/* The free functions wipe what they held; the final wipe
		 * covers the contexts themselves. */
		mbedtls_pk_free(&ca->sec->key);
		mbedtls_ctr_drbg_free(&ca->sec->drbg);
		mbedtls_entropy_free(&ca->sec->entropy);
		pthread_mutex_destroy(&ca->sec->mtx);
		mbedtls_platform_zeroize(ca->sec, sizeof *ca->sec);
		free(ca->sec);
	}
	free(ca->pem);
	free(ca);
}

void
mirai__tls_secret_free(char *s)
{
	if (s != NULL) {
		mbedtls_platform_zeroize(s, strlen(s));
		free(s);
	}
}

/* ---- owner-only files ---------------------------------------------------- */

int
mirai__tls_write_private(const char *dir, const char *name, const char *pem,
    char **path, mirai_errmsg *err)
{
	if (pem == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "tls: no contents");
	}
	return mirai__write_private(dir, name, pem, strlen(pem), path, err);
}

/* ---- the public wrapper ---------------------------------------------------- */

/*
 * What test_tls_link.c makes by hand, for users and mirai-bench: a CA, a
 * leaf for MIRAI__TLS_NAME, three owner-only files.  Each file is created
 * with O_EXCL and, on any failure, the ones this call wrote are removed:
 * it never replaces a file nor leaves half a set.  The CA's key is wiped
 * with the CA: nothing else can ever be signed by it.
 */
int
mirai_tls_generate(const char *dir, mirai_errmsg *err)
{
	static const char *const names[3] = {"ca.pem", "cert.pem", "key.pem"};
	mirai__tls_ca *ca = NULL;
	char *cert = NULL, *key = NULL, *paths[3] = {NULL, NULL, NULL};
	int rv;

	if (dir == NULL || *dir == '\0') {
		return mirai__fail(err, MIRAI_EINVAL, "tls: no directory");
	}
	if ((rv = mirai__tls_ca_create(&ca, "mirai CA", err)) != 0) {
		return rv;
	}
	rv = mirai__tls_cert_issue(ca, MIRAI__TLS_NAME, &cert, &key, err);
	if (rv == 0) {
		const char *pem[3] = {mirai__tls_ca_pem(ca), cert, key};

		for (size_t i = 0; rv == 0 && i < 3; i++) {
			rv = mirai__tls_write_private(dir, names[i], pem[i],
			    &paths[i], err);
		}
	}
	for (size_t i = 0; i < 3; i++) {
		if (rv != 0 && paths[i] != NULL) {
			unlink(paths[i]);
		}
		free(paths[i]);
	}
	free(cert);
	mirai__tls_secret_free(key);
	mirai__tls_ca_destroy(ca);
	return rv;
}
