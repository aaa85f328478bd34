/* pickle.c — strict pickle interpreter for torch.save's data.pkl (see pickle.h).
 *
 * Design: a value stack, a mark stack and a memo, as in CPython's _pickle.c, but every value is a
 * plain CbPickleValue allocated into one arena owned by the CbPickle. The interpreter is a loop over
 * opcodes with no recursion, so nesting depth cannot exhaust the C stack; sizes are bounded because
 * every opcode consumes at least one byte of input and the memo index is capped. */
#include "pickle.h"

#include <string.h>

/* Limits: far above what torch.save writes for any checkpoint, far below what could hurt. */
#define MAX_STACK      (1u << 20) /* values on the stack at once */
#define MAX_MARKS      4096u      /* open MARKs (nesting depth of tuples/lists/dicts being built) */
#define MAX_MEMO_INDEX (1u << 20) /* BINPUT/LONG_BINPUT index */
#define MAX_STRING     (1u << 20) /* bytes in one string */
#define MAX_GLOBAL_LINE 128u      /* module or name of a GLOBAL */

struct CbPickle {
  GPtrArray *arena; /* every CbPickleValue made, freed with free_value */
  CbPickleValue *root;
};

/* The only globals a torch tensor file needs. Each maps to a value kind, never to code. */
enum {
  GLOBAL_REBUILD_TENSOR_V2,
  GLOBAL_ORDERED_DICT,
  GLOBAL_STORAGE, /* + the dtype in storage_globals[] */
};

static const struct {
  const char *name; /* "torch.FloatStorage" */
  CbDType dtype;
} storage_globals[] = {
  { "torch.FloatStorage", CB_DTYPE_F32 },   { "torch.DoubleStorage", CB_DTYPE_F64 },
  { "torch.HalfStorage", CB_DTYPE_F16 },    { "torch.BFloat16Storage", CB_DTYPE_BF16 },
  { "torch.LongStorage", CB_DTYPE_I64 },    { "torch.IntStorage", CB_DTYPE_I32 },
  { "torch.ShortStorage", CB_DTYPE_I16 },   { "torch.CharStorage", CB_DTYPE_I8 },
  { "torch.ByteStorage", CB_DTYPE_U8 },     { "torch.BoolStorage", CB_DTYPE_BOOL },
};

/* Names of every opcode of pickle protocols 0-5, for messages; NULL = not a pickle opcode. */
static const char *const opcode_names[256] = {
  ['('] = "MARK", ['.'] = "STOP", ['0'] = "POP", ['1'] = "POP_MARK", ['2'] = "DUP",
  ['F'] = "FLOAT", ['I'] = "INT", ['J'] = "BININT", ['K'] = "BININT1", ['L'] = "LONG",
  ['M'] = "BININT2", ['N'] = "NONE", ['P'] = "PERSID", ['Q'] = "BINPERSID", ['R'] = "REDUCE",
  ['S'] = "STRING", ['T'] = "BINSTRING", ['U'] = "SHORT_BINSTRING", ['V'] = "UNICODE",
  ['X'] = "BINUNICODE", ['a'] = "APPEND", ['b'] = "BUILD", ['c'] = "GLOBAL", ['d'] = "DICT",
  ['}'] = "EMPTY_DICT", ['e'] = "APPENDS", ['g'] = "GET", ['h'] = "BINGET", ['i'] = "INST",
  ['j'] = "LONG_BINGET", ['l'] = "LIST", [']'] = "EMPTY_LIST", ['o'] = "OBJ", ['p'] = "PUT",
  ['q'] = "BINPUT", ['r'] = "LONG_BINPUT", ['s'] = "SETITEM", ['t'] = "TUPLE",
  [')'] = "EMPTY_TUPLE", ['u'] = "SETITEMS", ['G'] = "BINFLOAT", ['B'] = "BINBYTES",
  ['C'] = "SHORT_BINBYTES", [0x80] = "PROTO", [0x81] = "NEWOBJ", [0x82] = "EXT1",
  [0x83] = "EXT2", [0x84] = "EXT4", [0x85] = "TUPLE1", [0x86] = "TUPLE2", [0x87] = "TUPLE3",
  [0x88] = "NEWTRUE", [0x89] = "NEWFALSE", [0x8a] = "LONG1", [0x8b] = "LONG4",
  [0x8c] = "SHORT_BINUNICODE", [0x8d] = "BINUNICODE8", [0x8e] = "BINBYTES8",
  [0x8f] = "EMPTY_SET", [0x90] = "ADDITEMS", [0x91] = "FROZENSET", [0x92] = "NEWOBJ_EX",
  [0x93] = "STACK_GLOBAL", [0x94] = "MEMOIZE", [0x95] = "FRAME", [0x96] = "BYTEARRAY8",
  [0x97] = "NEXT_BUFFER", [0x98] = "READONLY_BUFFER",
};

typedef struct {
  const guint8 *data;
  gsize len;
  gsize pos;    /* next byte to read */
  gsize op_pos; /* offset of the opcode being run, for messages */
  const char *what;
  CbPickle *p;
  GPtrArray *stack; /* CbPickleValue *, borrowed from the arena */
  GArray *marks;    /* guint: stack length at each open MARK */
  GPtrArray *memo;  /* CbPickleValue * or NULL holes */
  GError **error;
} Unpickler;

static void
free_value (gpointer data)
{
  CbPickleValue *v = data;
  switch (v->kind) {
  case CB_PICKLE_STRING:
    g_free (v->u.str.s);
    break;
  case CB_PICKLE_TUPLE:
  case CB_PICKLE_LIST:
    g_ptr_array_unref (v->u.items);
    break;
  case CB_PICKLE_DICT:
    g_ptr_array_unref (v->u.dict.keys);
    g_ptr_array_unref (v->u.dict.values);
    g_hash_table_unref (v->u.dict.index);
    break;
  default:
    break;
  }
  g_free (v);
}

const char *
cb_pickle_kind_name (CbPickleKind kind)
{
  static const char *const names[] = {
    [CB_PICKLE_NONE] = "None",     [CB_PICKLE_BOOL] = "bool",     [CB_PICKLE_INT] = "int",
    [CB_PICKLE_FLOAT] = "float",   [CB_PICKLE_STRING] = "str",    [CB_PICKLE_TUPLE] = "tuple",
    [CB_PICKLE_LIST] = "list",     [CB_PICKLE_DICT] = "dict",     [CB_PICKLE_TENSOR] = "tensor",
    [CB_PICKLE_STORAGE] = "storage", [CB_PICKLE_GLOBAL] = "class",
  };
  return ((unsigned) kind < G_N_ELEMENTS (names)) ? names[kind] : "invalid";
}

static gboolean G_GNUC_PRINTF (3, 4)
fail (Unpickler *u, CbError code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const char *op = opcode_names[u->data[u->op_pos]];
  g_set_error (u->error, CB_ERROR, code, "%s: offset %" G_GSIZE_FORMAT " (opcode %s): %s", u->what,
               u->op_pos, op ? op : "?", msg);
  g_free (msg);
  return FALSE;
}

static CbPickleValue *
new_value (Unpickler *u, CbPickleKind kind)
{
  CbPickleValue *v = g_new0 (CbPickleValue, 1);
  v->kind = kind;
  if (kind == CB_PICKLE_TUPLE || kind == CB_PICKLE_LIST)
    v->u.items = g_ptr_array_new ();
  if (kind == CB_PICKLE_DICT) {
    v->u.dict.keys = g_ptr_array_new ();
    v->u.dict.values = g_ptr_array_new ();
    v->u.dict.index = g_hash_table_new (g_str_hash, g_str_equal);
  }
  g_ptr_array_add (u->p->arena, v);
  return v;
}

/* Bytes [pos, pos+n) of the input, or a FORMAT error saying how short it is. */
static gboolean
take (Unpickler *u, guint64 n, const guint8 **out)
{
  if (n > u->len - u->pos)
    return fail (u, CB_ERROR_FORMAT, "needs %" G_GUINT64_FORMAT " bytes but only %" G_GSIZE_FORMAT
                 " are left in the %" G_GSIZE_FORMAT "-byte pickle", n, u->len - u->pos, u->len);
  *out = u->data + u->pos;
  u->pos += n;
  return TRUE;
}

static guint64
read_le (const guint8 *b, int n)
{
  guint64 v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = (v << 8) | b[i];
  return v;
}

static gboolean
take_uint (Unpickler *u, int nbytes, guint64 *out)
{
  const guint8 *b = NULL;
  if (!take (u, nbytes, &b))
    return FALSE;
  *out = read_le (b, nbytes);
  return TRUE;
}

static gboolean
push (Unpickler *u, CbPickleValue *v)
{
  if (u->stack->len >= MAX_STACK)
    return fail (u, CB_ERROR_FORMAT, "stack deeper than %u values", MAX_STACK);
  g_ptr_array_add (u->stack, v);
  return TRUE;
}

/* Stack positions below the innermost MARK belong to the enclosing level and may not be popped. */
static guint
fence (Unpickler *u)
{
  return u->marks->len ? g_array_index (u->marks, guint, u->marks->len - 1) : 0;
}

static gboolean
pop (Unpickler *u, CbPickleValue **out)
{
  if (u->stack->len <= fence (u))
    return fail (u, CB_ERROR_FORMAT, "stack underflow");
  *out = g_ptr_array_steal_index (u->stack, u->stack->len - 1);
  return TRUE;
}

static gboolean
peek (Unpickler *u, CbPickleValue **out)
{
  if (u->stack->len <= fence (u))
    return fail (u, CB_ERROR_FORMAT, "stack underflow");
  *out = g_ptr_array_index (u->stack, u->stack->len - 1);
  return TRUE;
}

/* Close the innermost MARK: *start is where its items begin on the stack. */
static gboolean
pop_mark (Unpickler *u, guint *start)
{
  if (u->marks->len == 0)
    return fail (u, CB_ERROR_FORMAT, "no MARK to close");
  *start = g_array_index (u->marks, guint, u->marks->len - 1);
  g_array_set_size (u->marks, u->marks->len - 1);
  return TRUE;
}

/* Move stack[start..] into a new TUPLE or LIST. */
static CbPickleValue *
collect (Unpickler *u, CbPickleKind kind, guint start)
{
  CbPickleValue *v = new_value (u, kind);
  for (guint i = start; i < u->stack->len; i++)
    g_ptr_array_add (v->u.items, g_ptr_array_index (u->stack, i));
  g_ptr_array_set_size (u->stack, start);
  return v;
}

static gboolean
dict_set (Unpickler *u, CbPickleValue *dict, CbPickleValue *key, CbPickleValue *value)
{
  if (dict->kind != CB_PICKLE_DICT)
    return fail (u, CB_ERROR_FORMAT, "setting an item on a %s, not a dict", cb_pickle_kind_name (dict->kind));
  if (key->kind != CB_PICKLE_STRING)
    return fail (u, CB_ERROR_UNSUPPORTED, "dict key of type %s (only str keys are supported)",
                 cb_pickle_kind_name (key->kind));
  gpointer pos = g_hash_table_lookup (dict->u.dict.index, key->u.str.s);
  if (pos) { /* Python semantics: a repeated key replaces the value */
    g_ptr_array_index (dict->u.dict.values, GPOINTER_TO_UINT (pos) - 1) = value;
    return TRUE;
  }
  g_ptr_array_add (dict->u.dict.keys, key);
  g_ptr_array_add (dict->u.dict.values, value);
  g_hash_table_insert (dict->u.dict.index, key->u.str.s, GUINT_TO_POINTER (dict->u.dict.keys->len));
  return TRUE;
}

/* SETITEMS / APPENDS: stack[start..] are the items for the container just below the mark. */
static gboolean
fill_from_mark (Unpickler *u, gboolean is_dict)
{
  guint start;
  if (!pop_mark (u, &start))
    return FALSE;
  if (start == 0 || start <= fence (u))
    return fail (u, CB_ERROR_FORMAT, "no container below the MARK");
  CbPickleValue *target = g_ptr_array_index (u->stack, start - 1);
  guint n = u->stack->len - start;
  if (is_dict) {
    if (n % 2)
      return fail (u, CB_ERROR_FORMAT, "odd number of items (%u) for dict keys and values", n);
    for (guint i = start; i < u->stack->len; i += 2)
      if (!dict_set (u, target, g_ptr_array_index (u->stack, i), g_ptr_array_index (u->stack, i + 1)))
        return FALSE;
  } else {
    if (target->kind != CB_PICKLE_LIST)
      return fail (u, CB_ERROR_FORMAT, "appending to a %s, not a list", cb_pickle_kind_name (target->kind));
    for (guint i = start; i < u->stack->len; i++)
      g_ptr_array_add (target->u.items, g_ptr_array_index (u->stack, i));
  }
  g_ptr_array_set_size (u->stack, start);
  return TRUE;
}

static gboolean
op_string (Unpickler *u, int len_bytes)
{
  guint64 n;
  const guint8 *b = NULL;
  if (!take_uint (u, len_bytes, &n))
    return FALSE;
  if (n > MAX_STRING)
    return fail (u, CB_ERROR_FORMAT, "string length %" G_GUINT64_FORMAT " exceeds the limit of %u bytes",
                 n, MAX_STRING);
  if (!take (u, n, &b))
    return FALSE;
  if (memchr (b, 0, n))
    return fail (u, CB_ERROR_UNSUPPORTED, "string contains a NUL byte");
  if (!g_utf8_validate_len ((const char *) b, n, NULL))
    return fail (u, CB_ERROR_FORMAT, "string is not valid UTF-8");
  CbPickleValue *v = new_value (u, CB_PICKLE_STRING);
  v->u.str.s = g_strndup ((const char *) b, n);
  v->u.str.len = n;
  return push (u, v);
}

static gboolean
op_int (Unpickler *u, gint64 value)
{
  CbPickleValue *v = new_value (u, CB_PICKLE_INT);
  v->u.i = value;
  return push (u, v);
}

/* LONG1: little-endian two's complement of n bytes; we keep what fits in int64. */
static gboolean
op_long1 (Unpickler *u)
{
  guint64 n;
  const guint8 *b = NULL;
  if (!take_uint (u, 1, &n) || !take (u, n, &b))
    return FALSE;
  if (n > 8)
    return fail (u, CB_ERROR_UNSUPPORTED, "integer of %" G_GUINT64_FORMAT " bytes (more than 64 bits)", n);
  guint64 raw = read_le (b, (int) n);
  if (n > 0 && n < 8 && (b[n - 1] & 0x80))
    raw |= G_MAXUINT64 << (8 * n); /* sign-extend */
  return op_int (u, (gint64) raw);
}

static gboolean
op_binfloat (Unpickler *u)
{
  const guint8 *b = NULL;
  if (!take (u, 8, &b))
    return FALSE;
  guint64 bits = 0;
  for (int i = 0; i < 8; i++) /* big-endian, unlike every other pickle number */
    bits = (bits << 8) | b[i];
  CbPickleValue *v = new_value (u, CB_PICKLE_FLOAT);
  memcpy (&v->u.f, &bits, sizeof bits);
  return push (u, v);
}

/* One newline-terminated line of a GLOBAL opcode. */
static gboolean
take_line (Unpickler *u, char *out, gsize out_size)
{
  gsize avail = MIN (u->len - u->pos, (gsize) MAX_GLOBAL_LINE + 1);
  const guint8 *nl = memchr (u->data + u->pos, '\n', avail);
  if (!nl)
    return fail (u, CB_ERROR_FORMAT, "GLOBAL name not terminated by a newline within %u bytes",
                 MAX_GLOBAL_LINE);
  gsize n = nl - (u->data + u->pos);
  g_assert (n < out_size);
  memcpy (out, u->data + u->pos, n);
  out[n] = '\0';
  u->pos += n + 1;
  for (gsize i = 0; i < n; i++)
    if (!g_ascii_isalnum (out[i]) && out[i] != '_' && out[i] != '.')
      return fail (u, CB_ERROR_FORMAT, "GLOBAL name contains byte 0x%02x", (guint8) out[i]);
  return TRUE;
}

static gboolean
op_global (Unpickler *u)
{
  char module[MAX_GLOBAL_LINE + 1], name[MAX_GLOBAL_LINE + 1];
  if (!take_line (u, module, sizeof module) || !take_line (u, name, sizeof name))
    return FALSE;
  char *full = g_strconcat (module, ".", name, NULL);
  int id = -1;
  CbDType dtype = CB_DTYPE_F32;
  if (strcmp (full, "torch._utils._rebuild_tensor_v2") == 0)
    id = GLOBAL_REBUILD_TENSOR_V2;
  else if (strcmp (full, "collections.OrderedDict") == 0)
    id = GLOBAL_ORDERED_DICT;
  for (gsize i = 0; id < 0 && i < G_N_ELEMENTS (storage_globals); i++)
    if (strcmp (full, storage_globals[i].name) == 0) {
      id = GLOBAL_STORAGE;
      dtype = storage_globals[i].dtype;
    }
  if (id < 0) {
    fail (u, CB_ERROR_UNSUPPORTED, "global '%s' is not allowed (only the tensor classes torch.save uses)", full);
    g_free (full);
    return FALSE;
  }
  g_free (full);
  CbPickleValue *v = new_value (u, CB_PICKLE_GLOBAL);
  v->u.global.id = id;
  v->u.global.dtype = dtype;
  return push (u, v);
}

static gboolean
is_int (const CbPickleValue *v, gint64 min)
{
  return v->kind == CB_PICKLE_INT && v->u.i >= min;
}

/* BINPERSID: torch's persistent id ('storage', <StorageClass>, key, location, numel). */
static gboolean
op_binpersid (Unpickler *u)
{
  CbPickleValue *pid;
  if (!pop (u, &pid))
    return FALSE;
  if (pid->kind != CB_PICKLE_TUPLE || pid->u.items->len != 5)
    return fail (u, CB_ERROR_UNSUPPORTED, "persistent id is a %s, expected a 5-tuple ('storage', class, key, location, numel)",
                 cb_pickle_kind_name (pid->kind));
  CbPickleValue **it = (CbPickleValue **) pid->u.items->pdata;
  if (it[0]->kind != CB_PICKLE_STRING || strcmp (it[0]->u.str.s, "storage") != 0)
    return fail (u, CB_ERROR_UNSUPPORTED, "persistent id does not start with 'storage'");
  if (it[1]->kind != CB_PICKLE_GLOBAL || it[1]->u.global.id != GLOBAL_STORAGE)
    return fail (u, CB_ERROR_FORMAT, "persistent id names a %s, not a storage class", cb_pickle_kind_name (it[1]->kind));
  if (it[2]->kind != CB_PICKLE_STRING || it[2]->u.str.len == 0 || it[2]->u.str.len > 64)
    return fail (u, CB_ERROR_FORMAT, "storage key is not a string of 1 to 64 characters");
  for (gsize i = 0; i < it[2]->u.str.len; i++)
    if (!g_ascii_isalnum (it[2]->u.str.s[i]) && it[2]->u.str.s[i] != '_')
      return fail (u, CB_ERROR_FORMAT, "storage key '%s' has characters other than letters, digits and '_'",
                   it[2]->u.str.s);
  if (it[3]->kind != CB_PICKLE_STRING)
    return fail (u, CB_ERROR_FORMAT, "storage location is a %s, not a string", cb_pickle_kind_name (it[3]->kind));
  if (!is_int (it[4], 0))
    return fail (u, CB_ERROR_FORMAT, "storage size is not a non-negative int");
  CbPickleValue *v = new_value (u, CB_PICKLE_STORAGE);
  v->u.tensor.dtype = it[1]->u.global.dtype;
  v->u.tensor.storage_key = it[2]->u.str.s;
  v->u.tensor.storage_numel = (guint64) it[4]->u.i;
  return push (u, v);
}

/* Read an int tuple (size or stride) of at most CB_MAX_DIMS entries, each >= 0. */
static gboolean
int_tuple (Unpickler *u, const CbPickleValue *t, const char *what, guint64 *out, int *n)
{
  if (t->kind != CB_PICKLE_TUPLE)
    return fail (u, CB_ERROR_FORMAT, "tensor %s is a %s, not a tuple", what, cb_pickle_kind_name (t->kind));
  if (t->u.items->len > CB_MAX_DIMS)
    return fail (u, CB_ERROR_UNSUPPORTED, "tensor %s has %u dimensions (at most %d supported)", what,
                 t->u.items->len, CB_MAX_DIMS);
  for (guint i = 0; i < t->u.items->len; i++) {
    const CbPickleValue *d = g_ptr_array_index (t->u.items, i);
    if (!is_int (d, 0))
      return fail (u, CB_ERROR_FORMAT, "tensor %s entry %u is not a non-negative int", what, i);
    out[i] = (guint64) d->u.i;
  }
  *n = (int) t->u.items->len;
  return TRUE;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks[, metadata]) */
static gboolean
rebuild_tensor (Unpickler *u, const CbPickleValue *args)
{
  guint n = args->u.items->len;
  if (n != 6 && n != 7)
    return fail (u, CB_ERROR_FORMAT, "_rebuild_tensor_v2 called with %u arguments, expected 6 or 7", n);
  CbPickleValue **a = (CbPickleValue **) args->u.items->pdata;
  if (a[0]->kind != CB_PICKLE_STORAGE)
    return fail (u, CB_ERROR_FORMAT, "tensor storage is a %s", cb_pickle_kind_name (a[0]->kind));
  if (!is_int (a[1], 0))
    return fail (u, CB_ERROR_FORMAT, "tensor storage offset is not a non-negative int");
  if (a[4]->kind != CB_PICKLE_BOOL)
    return fail (u, CB_ERROR_FORMAT, "tensor requires_grad is a %s, not a bool", cb_pickle_kind_name (a[4]->kind));
  if (a[5]->kind != CB_PICKLE_DICT || a[5]->u.dict.keys->len != 0)
    return fail (u, CB_ERROR_UNSUPPORTED, "tensor has backward hooks");
  if (n == 7 && a[6]->kind != CB_PICKLE_NONE && (a[6]->kind != CB_PICKLE_DICT || a[6]->u.dict.keys->len != 0))
    return fail (u, CB_ERROR_UNSUPPORTED, "tensor has Python metadata");
  CbPickleValue *v = new_value (u, CB_PICKLE_TENSOR);
  CbPickleTensor *t = &v->u.tensor;
  *t = a[0]->u.tensor;
  t->offset = (guint64) a[1]->u.i;
  int nstride;
  if (!int_tuple (u, a[2], "size", t->shape, &t->ndim) || !int_tuple (u, a[3], "stride", t->stride, &nstride))
    return FALSE;
  if (nstride != t->ndim)
    return fail (u, CB_ERROR_FORMAT, "tensor has %d sizes but %d strides", t->ndim, nstride);
  return push (u, v);
}

static gboolean
op_reduce (Unpickler *u)
{
  CbPickleValue *args, *callable;
  if (!pop (u, &args) || !pop (u, &callable))
    return FALSE;
  if (callable->kind != CB_PICKLE_GLOBAL)
    return fail (u, CB_ERROR_FORMAT, "calling a %s", cb_pickle_kind_name (callable->kind));
  if (args->kind != CB_PICKLE_TUPLE)
    return fail (u, CB_ERROR_FORMAT, "call arguments are a %s, not a tuple", cb_pickle_kind_name (args->kind));
  switch (callable->u.global.id) {
  case GLOBAL_REBUILD_TENSOR_V2:
    return rebuild_tensor (u, args);
  case GLOBAL_ORDERED_DICT:
    if (args->u.items->len != 0)
      return fail (u, CB_ERROR_UNSUPPORTED, "OrderedDict called with %u arguments", args->u.items->len);
    return push (u, new_value (u, CB_PICKLE_DICT));
  default:
    return fail (u, CB_ERROR_UNSUPPORTED, "calling a storage class directly");
  }
}

static gboolean
memo_put (Unpickler *u, guint64 index)
{
  CbPickleValue *v;
  if (index >= MAX_MEMO_INDEX)
    return fail (u, CB_ERROR_FORMAT, "memo index %" G_GUINT64_FORMAT " exceeds the limit %u", index, MAX_MEMO_INDEX);
  if (!peek (u, &v))
    return FALSE;
  if (index >= u->memo->len)
    g_ptr_array_set_size (u->memo, (guint) index + 1);
  g_ptr_array_index (u->memo, index) = v;
  return TRUE;
}

static gboolean
memo_get (Unpickler *u, guint64 index)
{
  if (index >= u->memo->len || !g_ptr_array_index (u->memo, index))
    return fail (u, CB_ERROR_FORMAT, "memo index %" G_GUINT64_FORMAT " was never stored", index);
  return push (u, g_ptr_array_index (u->memo, index));
}

static gboolean
op_tuple_n (Unpickler *u, guint n)
{
  if (u->stack->len < fence (u) + n)
    return fail (u, CB_ERROR_FORMAT, "stack underflow");
  return push (u, collect (u, CB_PICKLE_TUPLE, u->stack->len - n));
}

/* Run one opcode. *done is set at STOP. */
static gboolean
step (Unpickler *u, gboolean *done)
{
  guint64 n;
  guint start;
  CbPickleValue *a, *b, *c;
  u->op_pos = u->pos;
  guint8 op = u->data[u->pos++];
  switch (op) {
  case 0x80: /* PROTO */
    if (!take_uint (u, 1, &n))
      return FALSE;
    if (n < 2 || n > 5)
      return fail (u, CB_ERROR_UNSUPPORTED, "pickle protocol %" G_GUINT64_FORMAT " (2 to 5 supported)", n);
    return TRUE;
  case 0x95: /* FRAME: a length prefix of the next opcodes; only check it is in bounds */
    if (!take_uint (u, 8, &n))
      return FALSE;
    if (n > u->len - u->pos)
      return fail (u, CB_ERROR_FORMAT, "frame of %" G_GUINT64_FORMAT " bytes runs past the end", n);
    return TRUE;
  case '.': /* STOP */
    if (u->marks->len != 0)
      return fail (u, CB_ERROR_FORMAT, "%u MARKs left open", u->marks->len);
    if (u->stack->len != 1)
      return fail (u, CB_ERROR_FORMAT, "%u values on the stack, expected 1", u->stack->len);
    if (u->pos != u->len)
      return fail (u, CB_ERROR_FORMAT, "%" G_GSIZE_FORMAT " bytes after STOP", u->len - u->pos);
    u->p->root = g_ptr_array_index (u->stack, 0);
    *done = TRUE;
    return TRUE;
  case '(': /* MARK */
    if (u->marks->len >= MAX_MARKS)
      return fail (u, CB_ERROR_FORMAT, "more than %u nested MARKs", MAX_MARKS);
    g_array_append_val (u->marks, u->stack->len);
    return TRUE;
  case '0': /* POP */
    return pop (u, &a);
  case '1': /* POP_MARK */
    if (!pop_mark (u, &start))
      return FALSE;
    g_ptr_array_set_size (u->stack, start);
    return TRUE;
  case '2': /* DUP */
    return peek (u, &a) && push (u, a);
  case 'N':
    return push (u, new_value (u, CB_PICKLE_NONE));
  case 0x88: /* NEWTRUE */
  case 0x89: /* NEWFALSE */
    a = new_value (u, CB_PICKLE_BOOL);
    a->u.b = (op == 0x88);
    return push (u, a);
  case 'J': /* BININT: signed 32-bit */
    return take_uint (u, 4, &n) && op_int (u, (gint32) (guint32) n);
  case 'K': /* BININT1 */
    return take_uint (u, 1, &n) && op_int (u, (gint64) n);
  case 'M': /* BININT2 */
    return take_uint (u, 2, &n) && op_int (u, (gint64) n);
  case 0x8a:
    return op_long1 (u);
  case 'G':
    return op_binfloat (u);
  case 'X': /* BINUNICODE */
    return op_string (u, 4);
  case 0x8c: /* SHORT_BINUNICODE */
    return op_string (u, 1);
  case 0x8d: /* BINUNICODE8 */
    return op_string (u, 8);
  case ')':
    return push (u, new_value (u, CB_PICKLE_TUPLE));
  case 't': /* TUPLE */
    return pop_mark (u, &start) && push (u, collect (u, CB_PICKLE_TUPLE, start));
  case 0x85:
  case 0x86:
  case 0x87: /* TUPLE1..3 */
    return op_tuple_n (u, op - 0x84);
  case ']':
    return push (u, new_value (u, CB_PICKLE_LIST));
  case 'l': /* LIST */
    return pop_mark (u, &start) && push (u, collect (u, CB_PICKLE_LIST, start));
  case 'a': /* APPEND */
    if (!pop (u, &a) || !peek (u, &b))
      return FALSE;
    if (b->kind != CB_PICKLE_LIST)
      return fail (u, CB_ERROR_FORMAT, "appending to a %s, not a list", cb_pickle_kind_name (b->kind));
    g_ptr_array_add (b->u.items, a);
    return TRUE;
  case 'e': /* APPENDS */
    return fill_from_mark (u, FALSE);
  case '}':
    return push (u, new_value (u, CB_PICKLE_DICT));
  case 'd': /* DICT: the dict holds stack[mark..], so build it in place of the items */
    if (!pop_mark (u, &start))
      return FALSE;
    a = new_value (u, CB_PICKLE_DICT);
    if ((u->stack->len - start) % 2)
      return fail (u, CB_ERROR_FORMAT, "odd number of items for dict keys and values");
    for (guint i = start; i < u->stack->len; i += 2)
      if (!dict_set (u, a, g_ptr_array_index (u->stack, i), g_ptr_array_index (u->stack, i + 1)))
        return FALSE;
    g_ptr_array_set_size (u->stack, start);
    return push (u, a);
  case 's': /* SETITEM */
    if (!pop (u, &c) || !pop (u, &b) || !peek (u, &a))
      return FALSE;
    return dict_set (u, a, b, c);
  case 'u': /* SETITEMS */
    return fill_from_mark (u, TRUE);
  case 'c':
    return op_global (u);
  case 'Q':
    return op_binpersid (u);
  case 'R':
    return op_reduce (u);
  case 'q': /* BINPUT */
    return take_uint (u, 1, &n) && memo_put (u, n);
  case 'r': /* LONG_BINPUT */
    return take_uint (u, 4, &n) && memo_put (u, n);
  case 0x94: /* MEMOIZE */
    return memo_put (u, u->memo->len);
  case 'h': /* BINGET */
    return take_uint (u, 1, &n) && memo_get (u, n);
  case 'j': /* LONG_BINGET */
    return take_uint (u, 4, &n) && memo_get (u, n);
  default:
    if (opcode_names[op])
      return fail (u, CB_ERROR_UNSUPPORTED, "opcode not supported by this reader");
    return fail (u, CB_ERROR_FORMAT, "unknown opcode 0x%02x", op);
  }
}

CbPickle *
cb_pickle_load (const guint8 *data, gsize len, const char *what, GError **error)
{
  CbPickle *p = g_new0 (CbPickle, 1);
  p->arena = g_ptr_array_new_with_free_func (free_value);
  Unpickler u = {
    .data = data, .len = len, .what = what, .p = p, .error = error,
    .stack = g_ptr_array_new (), .marks = g_array_new (FALSE, FALSE, sizeof (guint)),
    .memo = g_ptr_array_new (),
  };
  gboolean done = FALSE, ok = TRUE;
  while (ok && !done) {
    if (u.pos >= u.len) {
      g_set_error (error, CB_ERROR, CB_ERROR_FORMAT, "%s: ends at offset %" G_GSIZE_FORMAT " without a STOP opcode",
                   what, u.len);
      ok = FALSE;
      break;
    }
    ok = step (&u, &done);
  }
  g_ptr_array_unref (u.stack);
  g_array_unref (u.marks);
  g_ptr_array_unref (u.memo);
  if (!ok) {
    cb_pickle_free (p);
    return NULL;
  }
  return p;
}

void
cb_pickle_free (CbPickle *p)
{
  if (!p)
    return;
  g_ptr_array_unref (p->arena);
  g_free (p);
}

const CbPickleValue *
cb_pickle_root (const CbPickle *p)
{
  return p->root;
}

const CbPickleValue *
cb_pickle_dict_get (const CbPickleValue *dict, const char *key)
{
  if (!dict || dict->kind != CB_PICKLE_DICT)
    return NULL;
  gpointer pos = g_hash_table_lookup (dict->u.dict.index, key);
  return pos ? g_ptr_array_index (dict->u.dict.values, GPOINTER_TO_UINT (pos) - 1) : NULL;
}
