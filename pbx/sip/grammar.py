"""RFC 3261 §25 ABNF fragments as regular-expression source strings.

Owns: the character classes and small productions the SIP parsers compile; each regex sits
under the ABNF it implements (quoted from RFC 3261 §25.1 unless noted). Where a regex is more
liberal or strict than the ABNF, the comment says so.
Must not import: twisted, socket, sqlite3, flask, pbx.store. Pure constants, no compiled state.
"""

from __future__ import annotations

# alphanum  =  ALPHA / DIGIT
# unreserved  =  alphanum / mark
# mark        =  "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
UNRESERVED_CHARS = r"A-Za-z0-9\-_.!~*'()"

# escaped     =  "%" HEXDIG HEXDIG
ESCAPED = r"%[0-9A-Fa-f]{2}"

# token       =  1*(alphanum / "-" / "." / "!" / "%" / "*"
#                / "_" / "+" / "`" / "'" / "~" )
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = rf"[{TOKEN_CHARS}]+"

# header-name = token    (extension-header, §25.1)
HEADER_NAME = TOKEN

# word        =  1*(alphanum / "-" / "." / "!" / "%" / "*" /
#                "_" / "+" / "`" / "'" / "~" /
#                "(" / ")" / "<" / ">" /
#                ":" / "\" / DQUOTE /
#                "/" / "[" / "]" / "?" /
#                "{" / "}" )
WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"

# callid   =  word [ "@" word ]
CALLID = rf"{WORD}(?:@{WORD})?"

# quoted-string  =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext         =  LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair    =  "\" (%x00-09 / %x0B-0C / %x0E-7F)
# (LWS has been unfolded to SP/HTAB before this regex runs; UTF8-NONASCII is any code point
#  >= 0x80, including the surrogate escapes of undecodable octets.)
QDTEXT = r"[\t \x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]"
QUOTED_PAIR = r"\\[\x00-\x09\x0b\x0c\x0e-\x7f]"
QUOTED_STRING = rf'"(?:{QDTEXT}|{QUOTED_PAIR})*"'

# scheme         =  ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )   (RFC 3986 §3.1)
SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"

# user             =  1*( unreserved / escaped / user-unreserved )
# user-unreserved  =  "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER_CHARS = UNRESERVED_CHARS + r"&=+$,;?/"
USER = rf"(?:[{USER_CHARS}]|{ESCAPED})+"

# password         =  *( unreserved / escaped /
#                     "&" / "=" / "+" / "$" / "," )
PASSWORD_CHARS = UNRESERVED_CHARS + r"&=+$,"
PASSWORD = rf"(?:[{PASSWORD_CHARS}]|{ESCAPED})*"

# hostname         =  *( domainlabel "." ) toplabel [ "." ]
# domainlabel      =  alphanum
#                     / alphanum *( alphanum / "-" ) alphanum
# toplabel         =  ALPHA / ALPHA *( alphanum / "-" ) alphanum
HOSTNAME = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)

# IPv4address    =  1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
IPV4ADDRESS = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"

# IPv6reference  =  "[" IPv6address "]"
# (character-level only; the address itself is checked with the ipaddress module)
IPV6REFERENCE = r"\[[0-9A-Fa-f:.]+\]"

# host             =  hostname / IPv4address / IPv6reference
HOST = rf"(?:{IPV4ADDRESS}|{HOSTNAME}|{IPV6REFERENCE})"

# port           =  1*DIGIT      (at most 5 digits here; the value is range-checked)
PORT = r"\d{1,5}"

# paramchar         =  param-unreserved / unreserved / escaped
# param-unreserved  =  "[" / "]" / "/" / ":" / "&" / "+" / "$"
PARAM_CHARS = UNRESERVED_CHARS + r"\[\]/:&+$"
PARAMCHAR = rf"(?:[{PARAM_CHARS}]|{ESCAPED})"

# uri-parameter     =  transport-param / user-param / method-param
#                      / ttl-param / maddr-param / lr-param / other-param
# other-param       =  pname [ "=" pvalue ]
# pname             =  1*paramchar
# pvalue            =  1*paramchar
URI_PARAMETER = rf"{PARAMCHAR}+(?:={PARAMCHAR}+)?"

# hnv-unreserved  =  "[" / "]" / "/" / "?" / ":" / "+" / "$"
# hname           =  1*( hnv-unreserved / unreserved / escaped )
# hvalue          =  *( hnv-unreserved / unreserved / escaped )
HNV_CHARS = UNRESERVED_CHARS + r"\[\]/?:+$"
HNVCHAR = rf"(?:[{HNV_CHARS}]|{ESCAPED})"
HEADER = rf"{HNVCHAR}+={HNVCHAR}*"

# SIP-URI          =  "sip:" [ userinfo ] hostport
#                     uri-parameters [ headers ]
# userinfo         =  ( user / telephone-subscriber ) [ ":" password ] "@"
# hostport         =  host [ ":" port ]
# uri-parameters   =  *( ";" uri-parameter)
# headers          =  "?" header *( "&" header )
SIP_URI_REST = (
    rf"(?:(?P<user>{USER})(?::(?P<password>{PASSWORD}))?@)?"
    rf"(?P<host>{HOST})(?::(?P<port>{PORT}))?"
    rf"(?P<params>(?:;{URI_PARAMETER})*)"
    rf"(?:\?(?P<headers>{HEADER}(?:&{HEADER})*))?"
)

# telephone-subscriber (RFC 3966 §3), simplified to its character set:
#   global-number-digits = "+" *phonedigit DIGIT *phonedigit
#   local-number-digits  = *phonedigit-hex (HEXDIG / "*" / "#") *phonedigit-hex
#   visual-separator     = "-" / "." / "(" / ")"
TEL_NUMBER = r"\+?[0-9A-Fa-f*#\-.()]+"

# SIP-Version    =  "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_VERSION = r"SIP/\d+\.\d+"

# Status-Code     =  ... / extension-code ;  extension-code  =  3DIGIT
STATUS_CODE = r"\d{3}"

# Reason-Phrase   =  *(reserved / unreserved / escaped
#                    / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
# (accepted as any text without CR/LF)

# display-name   =  *(token LWS)/ quoted-string
DISPLAY_TOKENS = rf"{TOKEN}(?:[ \t]+{TOKEN})*"

# generic-param  =  token [ EQUAL gen-value ]
# gen-value      =  token / host / quoted-string
# EQUAL = SWS "=" SWS ; SEMI = SWS ";" SWS
# (host adds "[", "]" and ":" to the token characters)
GEN_VALUE = rf"(?:[{TOKEN_CHARS}\[\]:]+|{QUOTED_STRING})"
GENERIC_PARAM = rf"[ \t]*;[ \t]*(?P<name>{TOKEN})(?:[ \t]*=[ \t]*(?P<value>{GEN_VALUE}))?[ \t]*"

# via-parm          =  sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol     =  protocol-name SLASH protocol-version
#                      SLASH transport
# protocol-name     =  "SIP" / token
# protocol-version  =  token
# transport         =  "UDP" / "TCP" / "TLS" / "SCTP" / other-transport
# sent-by           =  host [ COLON port ]
# SLASH = SWS "/" SWS ; COLON = SWS ":" SWS
# (protocol-name/version must be SIP/2.0 here: the only version we speak)
VIA_PARM = (
    rf"[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*(?P<transport>{TOKEN})[ \t]+"
    rf"(?P<host>{HOST})(?:[ \t]*:[ \t]*(?P<port>{PORT}))?"
    r"(?P<params>.*)"
)

# CSeq  =  "CSeq" HCOLON 1*DIGIT LWS Method
CSEQ_VALUE = rf"[ \t]*(?P<seq>\d+)[ \t]+(?P<method>{TOKEN})[ \t]*"

# challenge / credentials (§25.1, RFC 7616): auth-scheme LWS auth-param *(COMMA auth-param)
# auth-param = auth-param-name EQUAL ( token / quoted-string )
AUTH_PARAM = rf"[ \t]*(?P<name>{TOKEN})[ \t]*=[ \t]*(?P<value>{QUOTED_STRING}|[^\s,\"]+)[ \t]*"
