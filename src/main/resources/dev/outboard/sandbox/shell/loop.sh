# The loop a sandbox's shell runs, sent to it once as its first input line (LoopScript): lines
# starting with "#" and blank lines are dropped, the rest are stripped of surrounding whitespace and
# joined with single spaces into one line, and @NAME@ placeholders are filled in. It must be one
# line: bash reads a pipe one byte at a time and runs each line once it has read it, so whatever
# came after the line that forks the first subshell would be read by that subshell as a command.
#
# A subshell, forked ahead, waits for the next command line ("<nonce> <ANSI-C quoted command>",
# kept short for the same byte-at-a-time reading), notes that it started, runs it and, on exit,
# saves its cwd and exports; the shell then enters that cwd, takes the exports if they changed,
# forks the next subshell and only then prints the end marker. So the fork is off the path of the
# next command (a resumed sandbox answers in a fraction of the time), and a suspend, which comes
# after a marker, always finds the waiting subshell in the process group.
#  - A subshell killed before it read a command (a kill aimed at the one before) leaves no "started"
#    note, so no marker. One killed while reading leaves the rest of the line; the next subshell
#    sees no nonce in it and ends as that command killed (137).
#  - No "started" note can be written (a full /tmp): the command does not run, and 254 says so.
#  - The loop's stderr is /dev/null, so the shell's own notices ("Killed") never reach a command's
#    output; the subshell's stderr is its stdout again.
#  - Exports are saved as export lines, never the shell's own variables (__ob_*) nor ones that would
#    change how the loop itself runs (IFS, TMOUT, SHELLOPTS, ...).
#  - The cwd is entered again after every command (a directory deleted and made anew is a new one);
#    re-sourcing unchanged exports would cost about half a millisecond, so it is skipped.
#  - Background jobs ignore SIGINT/SIGQUIT; the command gets them back. >| writes despite set -C.
#
# Placeholders: MEMORY_KB (ulimit -v), EXTRA_INIT and COMMAND_INIT (the provider's own commands for
# the shell and for each command's subshell, each ending in "; ", or empty), CPU_SECONDS and
# CPU_SECONDS_HARD (ulimit -t), NONCE (the sandbox's end-marker nonce), and NAMES_FILE, STATE_FILE,
# STARTED_FILE (bookkeeping files outside the workspace, as ANSI-C quoted words).

ulimit -v @MEMORY_KB@;
@EXTRA_INIT@__ob_save() {
  local __ob_n;
  builtin compgen -e >| @NAMES_FILE@;
  {
    builtin printf 'builtin cd -- %q\n' "$PWD";
    while IFS= read -r __ob_n; do
      case $__ob_n in
        __ob_*|IFS|TMOUT|SHELLOPTS|BASHOPTS|POSIXLY_CORRECT|BASH_ENV|ENV|PS4|BASH_XTRACEFD|BASH_COMPAT|BASH_FUNC_*) ;;
        *) builtin printf 'builtin export %s=%q\n' "$__ob_n" "${!__ob_n}";;
      esac;
    done < @NAMES_FILE@;
  } >| @STATE_FILE@;
};
__ob_fork() {
  (
    exec 2>&1;
    trap __ob_save EXIT;
    trap - INT QUIT;
    IFS=' ' read -r __ob_tok __ob_line || exit 255;
    [[ $__ob_tok == @NONCE@ ]] || { builtin printf 1 >| @STARTED_FILE@; exit 137; };
    builtin printf 1 >| @STARTED_FILE@ || {
      builtin echo '[the sandbox could not note the command (is /tmp full?); it did not run]';
      exit 254;
    };
    ulimit -S -t @CPU_SECONDS@;
    ulimit -H -t @CPU_SECONDS_HARD@;
    @COMMAND_INIT@eval "__ob_cmd=$__ob_line";
    eval "$__ob_cmd" </dev/null
  ) 0<&0 & __ob_pid=$!;
};
__ob_wait() { wait "$__ob_pid"; __ob_ec=$?; };
__ob_started() { local f=; IFS= read -r f < @STARTED_FILE@; [[ -n $f ]] || (( __ob_ec == 254 )); };
__ob_load() {
  local c= e=;
  { IFS= read -r c; IFS= read -r -d '' e; } < @STATE_FILE@;
  [[ -n $c ]] && eval "$c";
  [[ -n $e && $e != "$__ob_last" ]] && __ob_last=$e;
};
__ob_next() { : >| @STATE_FILE@; : >| @STARTED_FILE@; __ob_fork; };
__ob_mark() { builtin printf '\001@NONCE@:%d\n' "$__ob_ec"; };
__ob_ec=0; __ob_last=; __ob_next; __ob_mark;
while :; do
  __ob_wait;
  if __ob_started; then __ob_load && . @STATE_FILE@; __ob_next; __ob_mark; else __ob_next; fi;
done 2>/dev/null
