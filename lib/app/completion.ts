/**
 * `baton completion bash|zsh`: completion scripts made from the command tree
 * (usage.ts), so a new command or option completes without anyone editing a
 * script. Values that are cheap to find are completed too, by the shell itself
 * and without starting node: runbook names (the project's runbooks/ and
 * baton's own), run ids and saved stacks (in $BATON_HOME, else the project's
 * .baton/), files, and choices. The project is found as baton finds it
 * (core/project.ts), by a small shell function.
 */
import type { Command } from 'commander';
import { quotedText } from '../core/shell.ts';
import { builtinRunbooks } from './load-module.ts';
import { commandTree, type ArgSpec, type CommandSpec, type OptionSpec } from './usage.ts';

export type Shell = 'bash' | 'zsh';
export const SHELLS: readonly Shell[] = ['bash', 'zsh'];

/** What a value is, for completing it; undefined for free text (a parameter, a token). */
type ValueKind = 'runbook' | 'run' | 'stack' | 'file' | 'dir' | `choices=${string}`;

function kindOf(name: string, choices: string[] | undefined): ValueKind | undefined {
  if (choices) return `choices=${choices.join(',')}`;
  if (name === 'runbook') return 'runbook';
  if (name === 'run-id') return 'run';
  if (name === 'stack') return 'stack';
  if (name === 'dir') return 'dir';
  if (/file|path/.test(name)) return 'file';
  return undefined;
}

const argKind = (a: ArgSpec): string =>
  `${kindOf(a.name, a.choices) ?? '-'}${a.variadic ? '...' : ''}`;
/** By the value's name (`--plan <file>`), else the option's (`--stack <name>`). */
const optionKind = (o: OptionSpec): ValueKind | undefined =>
  o.value === undefined
    ? undefined
    : (kindOf(o.value, o.choices) ?? kindOf(o.long.replace(/^--/, ''), undefined));

/** Single-quoted for sh, bash and zsh alike (zsh expands an unquoted leading `=`). */
function sq(text: string): string {
  return `'${quotedText(text)}'`;
}

function firstLine(text: string, max = 80): string {
  const line = text.split('\n')[0]!.trim();
  return line.length > max ? line.slice(0, max - 1) + '…' : line;
}

function flagsOf(o: OptionSpec): string[] {
  return o.short ? [o.long, o.short] : [o.long];
}

interface Options {
  /** baton's own runbooks directory, completed beside ./runbooks; default: where baton's are. */
  packageRunbooks?: string;
  /** The extension of the runbooks there: `.ts` in a checkout, `.js` in the installed package. */
  packageExtension?: string;
}

export function completionScript(program: Command, shell: Shell, given: Options = {}): string {
  const builtin = builtinRunbooks();
  const opts = {
    packageRunbooks: given.packageRunbooks ?? builtin.dir,
    packageExtension: given.packageExtension ?? builtin.extensions[0]!,
  };
  const tree = commandTree(program);
  return shell === 'bash' ? bashScript(tree, opts) : zshScript(tree, opts);
}

function valuedCases(tree: CommandSpec[], indent: string): string[] {
  const lines: string[] = [];
  for (const spec of tree)
    for (const o of spec.options) {
      const kind = optionKind(o);
      if (!kind) continue;
      for (const flag of flagsOf(o))
        lines.push(`${indent}${sq([...spec.path, flag].join(' '))}) REPLY=${sq(kind)} ;;`);
    }
  return lines;
}

/** `_baton_kind`, the same in both shells: the kind of value an option takes. */
function kindFunction(tree: CommandSpec[]): string {
  return `# The kind of value an option takes, given "COMMAND OPTION".
_baton_kind() {
  REPLY=
  case $1 in
${valuedCases(tree, '  ').join('\n')}
  esac
}`;
}

/**
 * \`_baton_project\`: the project root and baton home, found as core/project.ts
 * finds them, into _baton_root and _baton_home. bash has no test for
 * world-writable, so it stops at sticky directories (/tmp) only.
 */
const BASH_PROJECT = `# The project root and baton home, found as baton finds them.
_baton_project() {
  local d weak= up
  d=$(pwd -P)
  _baton_root=
  while :; do
    if [[ -e $d/baton.policy.json || -d $d/runbooks ]]; then
      _baton_root=$d
      break
    fi
    [[ -z $weak && -d $d/.baton ]] && weak=$d
    [[ -e $d/.git || $d == / ]] && break
    up=\${d%/*}
    up=\${up:-/}
    [[ -k $up ]] && break
    d=$up
  done
  _baton_root=\${_baton_root:-\${weak:-$(pwd -P)}}
  _baton_home=\${BATON_HOME:-$_baton_root/.baton}
}`;

const ZSH_PROJECT = `# The project root and baton home, found as baton finds them.
_baton_project() {
  local d=\${PWD:A} weak= up
  local -a shared
  _baton_root=
  while :; do
    if [[ -e $d/baton.policy.json || -d $d/runbooks ]]; then
      _baton_root=$d
      break
    fi
    [[ -z $weak && -d $d/.baton ]] && weak=$d
    [[ -e $d/.git || $d == / ]] && break
    up=\${d:h}
    shared=(\${up}(Nf:o+w:))
    [[ -k $up ]] || (($#shared)) && break
    d=$up
  done
  _baton_root=\${_baton_root:-\${weak:-\${PWD:A}}}
  _baton_home=\${BATON_HOME:-$_baton_root/.baton}
}`;

function bashScript(tree: CommandSpec[], opts: Required<Options>): string {
  const spec = tree.map((c) => {
    const valued = c.options.filter((o) => o.value !== undefined).flatMap(flagsOf);
    const sets = [
      `_baton_subs=${sq(c.subcommands.map((s) => s.name).join(' '))}`,
      `_baton_opts=${sq(c.options.flatMap(flagsOf).join(' '))}`,
      `_baton_valued=${sq(valued.join(' '))}`,
      `_baton_args=${sq(c.args.map(argKind).join(' '))}`,
    ];
    return `  ${sq(c.path.join(' '))}) ${sets.join(' ')} ;;`;
  });
  return `# bash completion for baton, generated by \`baton completion bash\` from its command definitions.
# Load it in ~/.bashrc with: source <(baton completion bash)

_baton_spec() {
  _baton_subs= _baton_opts= _baton_valued= _baton_args=
  case $1 in
${spec.join('\n')}
  esac
}

${kindFunction(tree)}

${BASH_PROJECT}

# Names, one a line; duplicates (the same runbook here and in baton) once.
_baton_names() {
  local kind=$1 d e f seen=' ' _baton_root _baton_home
  _baton_project
  case $kind in
  runbook)
    for d in "$_baton_root/runbooks" ${sq(opts.packageRunbooks)}; do
      e=.ts
      [[ $d == "$_baton_root/runbooks" ]] || e=${sq(opts.packageExtension)}
      for f in "$d"/*"$e"; do
        [[ -e $f ]] || continue
        f=\${f##*/}
        [[ $f == *.test.ts || $f == *.d.ts || $seen == *" \${f%"$e"} "* ]] && continue
        seen+="\${f%"$e"} "
        printf '%s\\n' "\${f%"$e"}"
      done
    done
    ;;
  run)
    for f in "$_baton_home"/runs/*/; do
      [[ -d $f ]] || continue
      f=\${f%/}
      printf '%s\\n' "\${f##*/}"
    done
    ;;
  stack)
    printf '%s\\n' local demo
    for f in "$_baton_home"/stacks/*.json; do
      [[ -e $f ]] || continue
      f=\${f##*/}
      printf '%s\\n' "\${f%.json}"
    done
    ;;
  esac
}

_baton_values() {
  local IFS=$'\\n'
  case $1 in
  runbook | run | stack) COMPREPLY=($(compgen -W "$(_baton_names "$1")" -- "$2")) ;;
  file)
    COMPREPLY=($(compgen -f -- "$2"))
    compopt -o filenames 2>/dev/null
    ;;
  dir)
    COMPREPLY=($(compgen -d -- "$2"))
    compopt -o filenames 2>/dev/null
    ;;
  choices=*)
    local list=\${1#choices=}
    COMPREPLY=($(compgen -W "\${list//,/$'\\n'}" -- "$2"))
    ;;
  esac
}

_baton() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  local cmdpath= w i=1 nargs=0 kind REPLY
  local _baton_subs _baton_opts _baton_valued _baton_args
  COMPREPLY=()
  # Find the command and count its arguments so far, stepping over options and their values.
  while ((i < COMP_CWORD)); do
    w=\${COMP_WORDS[i]}
    _baton_spec "$cmdpath"
    if [[ $w == -- ]]; then
      return 0 # what follows is a command for a host (testnet exec)
    elif [[ $w == = ]]; then
      i=$((i + 1)) # NAME=VALUE, split at = by COMP_WORDBREAKS: the value goes with it
    elif [[ $w == -* ]]; then
      if [[ " $_baton_valued " == *" $w "* ]]; then
        [[ \${COMP_WORDS[i+1]} == = ]] && i=$((i + 1))
        i=$((i + 1))
      fi
    elif ((nargs == 0)) && [[ " $_baton_subs " == *" $w "* ]]; then
      cmdpath=\${cmdpath:+$cmdpath }$w
    else
      nargs=$((nargs + 1))
    fi
    i=$((i + 1))
  done
  [[ $cur == = || $prev == = ]] && return 0
  _baton_spec "$cmdpath"
  if [[ $prev == -* && " $_baton_valued " == *" $prev "* ]]; then
    _baton_kind "$cmdpath $prev"
    _baton_values "$REPLY" "$cur"
  elif [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$_baton_opts" -- "$cur"))
  elif ((nargs == 0)) && [[ -n $_baton_subs ]]; then
    COMPREPLY=($(compgen -W "$_baton_subs" -- "$cur"))
  else
    local -a kinds=($_baton_args)
    kind=\${kinds[nargs]}
    if [[ -z $kind && \${#kinds[@]} -gt 0 && \${kinds[\${#kinds[@]}-1]} == *... ]]; then
      kind=\${kinds[\${#kinds[@]}-1]}
    fi
    _baton_values "\${kind%...}" "$cur"
  fi
  return 0
}

complete -F _baton baton
`;
}

function zshScript(tree: CommandSpec[], opts: Required<Options>): string {
  const described = (name: string, description: string): string =>
    sq(`${name.replaceAll(':', '\\:')}:${firstLine(description)}`);
  const spec = tree.map((c) => {
    const valued = c.options.filter((o) => o.value !== undefined).flatMap(flagsOf);
    const sets = [
      `_baton_names=(${c.subcommands.map((s) => sq(s.name)).join(' ')})`,
      `_baton_subs=(${c.subcommands.map((s) => described(s.name, s.description)).join(' ')})`,
      `_baton_opts=(${c.options.flatMap((o) => flagsOf(o).map((f) => described(f, o.description))).join(' ')})`,
      `_baton_valued=(${valued.map(sq).join(' ')})`,
      `_baton_args=(${c.args.map((a) => sq(argKind(a))).join(' ')})`,
    ];
    return `  ${sq(c.path.join(' '))})\n    ${sets.join('\n    ')}\n    ;;`;
  });
  return `#compdef baton
# zsh completion for baton, generated by \`baton completion zsh\` from its command definitions.
# Save it as _baton in a directory on $fpath (before compinit runs), or, after
# compinit in ~/.zshrc: source <(baton completion zsh)

_baton_spec() {
  _baton_names=() _baton_subs=() _baton_opts=() _baton_valued=() _baton_args=()
  case $1 in
${spec.join('\n')}
  esac
}

${kindFunction(tree)}

${ZSH_PROJECT}

_baton_values() {
  local kind=$1 d e f _baton_root _baton_home
  local -a items
  _baton_project
  case $kind in
  runbook)
    for d in $_baton_root/runbooks ${sq(opts.packageRunbooks)}; do
      e=.ts
      [[ $d == $_baton_root/runbooks ]] || e=${sq(opts.packageExtension)}
      for f in $d/*$e(N:t); do
        [[ $f == *.test.ts || $f == *.d.ts ]] || items+=(\${f%$e})
      done
    done
    compadd -a -- items
    ;;
  run)
    items=($_baton_home/runs/*(N/:t))
    compadd -a -- items
    ;;
  stack)
    items=(local demo $_baton_home/stacks/*.json(N:t:r))
    compadd -a -- items
    ;;
  file) _files ;;
  dir) _files -/ ;;
  choices=*)
    items=(\${(s:,:)kind#choices=})
    compadd -a -- items
    ;;
  esac
}

_baton() {
  local cmdpath= w i=2 nargs=0 kind REPLY
  local -a _baton_names _baton_subs _baton_opts _baton_valued _baton_args
  # Find the command and count its arguments so far, stepping over options and their values.
  while ((i < CURRENT)); do
    w=\${words[i]}
    _baton_spec "$cmdpath"
    if [[ $w == -- ]]; then
      return 1 # what follows is a command for a host (testnet exec)
    elif [[ $w == -* ]]; then
      [[ $w != *=* ]] && ((\${_baton_valued[(Ie)$w]})) && i=$((i + 1))
    elif ((nargs == 0 && \${_baton_names[(Ie)$w]})); then
      cmdpath=\${cmdpath:+$cmdpath }$w
    else
      nargs=$((nargs + 1))
    fi
    i=$((i + 1))
  done
  _baton_spec "$cmdpath"
  local prev=\${words[CURRENT-1]}
  if [[ $PREFIX == -*=* ]]; then
    _baton_kind "$cmdpath \${PREFIX%%=*}"
    compset -P '*='
    _baton_values "$REPLY"
  elif [[ $prev == -* ]] && ((\${_baton_valued[(Ie)$prev]})); then
    _baton_kind "$cmdpath $prev"
    _baton_values "$REPLY"
  elif [[ $PREFIX == -* ]]; then
    _describe -t options 'baton option' _baton_opts
  elif ((nargs == 0 && $#_baton_subs)); then
    _describe -t commands 'baton command' _baton_subs
  else
    kind=\${_baton_args[nargs+1]}
    [[ -z $kind && \${_baton_args[-1]} == *... ]] && kind=\${_baton_args[-1]}
    _baton_values "\${kind%...}"
  fi
}

if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then
  _baton "$@"
else
  compdef _baton baton
fi
`;
}
