#!/usr/bin/env bash
# The Groovy parser tests/unit/test_farm_files.py checks examples/farm/Jenkinsfile with.
#
#   groovy   Debian's package (2.4.21 on bookworm, the Groovy version Jenkins itself runs
#            pipelines with), installed with apt-get when missing; it runs on the JVM already
#            on the machine (the first of $JAVA_HOME, the java on PATH and /usr/lib/jvm/* that
#            this Groovy starts on).
#
# Usage: scripts/farm-validators.sh install          # install (if needed) and check it starts
#        scripts/farm-validators.sh outline FILE     # compile FILE as a Groovy script (every
#            phase up to class generation, in memory) and print its outline: one line per call
#            that takes a closure ("stage:Profile", "matrix", ...), indented two spaces per
#            level, looking through if/else, for and try blocks; exit 1 on a syntax error
#
# Exit 3 when Groovy cannot be installed or started here (the test then skips, with this
# script's message as the reason). Jenkins' own declarative linter (the pipeline-model-
# definition plugin) needs a running Jenkins controller and is not used.
set -euo pipefail

log() { echo "farm-validators.sh: $*" >&2; }
unavailable() { log "$*"; exit 3; }

install_groovy() {
    command -v groovy >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || unavailable "groovy is not installed and installing it needs root (apt-get install groovy)"
    command -v apt-get >/dev/null 2>&1 || unavailable "groovy is not installed and there is no apt-get to install it"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends groovy >&2; then
        apt-get update -q >&2 || true
        apt-get install -y -q --no-install-recommends groovy >&2 ||
            unavailable "apt-get install groovy failed"
    fi
    command -v groovy >/dev/null 2>&1 || unavailable "groovy is still missing after apt-get install groovy"
}

# JAVA_HOME for groovy: Debian's launcher defaults to /usr/lib/jvm/default-java, which only
# the default-jre packages create; Groovy 2.4 may not start on the newest JVMs.
pick_java() {
    local cand home
    for cand in "${JAVA_HOME:-}" "$(dirname "$(dirname "$(readlink -f "$(command -v java 2>/dev/null || echo /nonexistent)")")")" /usr/lib/jvm/*; do
        if [ -z "$cand" ] || [ ! -x "$cand/bin/java" ]; then continue; fi
        home="$cand"
        if JAVA_HOME="$home" groovy --version >/dev/null 2>&1; then
            echo "$home"
            return 0
        fi
    done
    unavailable "groovy does not start on any JVM here (tried \$JAVA_HOME, the java on PATH and /usr/lib/jvm/*)"
}

OUTLINE_GROOVY='
import org.codehaus.groovy.ast.expr.*
import org.codehaus.groovy.ast.stmt.*
import org.codehaus.groovy.control.*

def file = new File(args[0])
def unit = new CompilationUnit()
unit.addSource("Jenkinsfile.groovy", file.getText("UTF-8"))
def compile = { int phase ->
    try {
        unit.compile(phase)
    } catch (CompilationFailedException e) {
        System.err.println(e.message)
        System.exit(1)
    }
}
compile(Phases.CONVERSION)  // parsed: the outline is read from this AST
def lines = []
def walk
walk = { Statement st, int depth ->
    if (st instanceof BlockStatement) {
        st.statements.each { walk(it, depth) }
    } else if (st instanceof IfStatement) {
        walk(st.ifBlock, depth)
        walk(st.elseBlock, depth)
    } else if (st instanceof ForStatement || st instanceof WhileStatement) {
        walk(st.loopBlock, depth)
    } else if (st instanceof TryCatchStatement) {
        walk(st.tryStatement, depth)
        st.catchStatements.each { walk(it.code, depth) }
        walk(st.finallyStatement, depth)
    } else if (st instanceof ExpressionStatement && st.expression instanceof MethodCallExpression) {
        def call = st.expression
        def args = call.arguments instanceof TupleExpression ? call.arguments.expressions : [call.arguments]
        def closures = args.findAll { it instanceof ClosureExpression }
        if (closures) {
            def label = args.find { it instanceof ConstantExpression && it.value instanceof String }
            lines << ("  " * depth) + call.methodAsString + (label ? ":" + label.value : "")
            closures.each { walk(it.code, depth + 1) }
        }
    }
}
walk(unit.AST.modules[0].statementBlock, 0)
compile(Phases.CLASS_GENERATION)  // every later check of the compiler, in memory
println lines.join("\n")
'

cmd="${1:-}"
case "$cmd" in
    install)
        install_groovy
        home="$(pick_java)"
        JAVA_HOME="$home" groovy --version
        ;;
    outline)
        [ $# -eq 2 ] || { log "usage: $0 outline FILE"; exit 2; }
        install_groovy
        home="$(pick_java)"
        tmp="$(mktemp -d "${TMPDIR:-/tmp}/farm-validators.XXXXXX")"
        trap 'rm -rf "$tmp"' EXIT
        printf '%s\n' "$OUTLINE_GROOVY" >"$tmp/outline.groovy"
        JAVA_HOME="$home" groovy "$tmp/outline.groovy" "$2"
        ;;
    *)
        log "usage: $0 install | outline FILE"
        exit 2
        ;;
esac
