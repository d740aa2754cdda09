# clients/cli/herald-cli.bash - bash completion for herald-cli (installed as
# share/bash-completion/completions/herald-cli). Completes the command, its
# options and verbs, the global options anywhere, and file names after the
# options that take a file.

_herald_cli()
{
    local cur prev cmd i w
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    local globals="--url --token --api-key --cafile --tls-name --insecure --json --timeout --help --version"
    local commands="pub sub history presence state seats stats token check-config"

    case $prev in
        --cafile|--config|--key)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --url|--token|--api-key|--tls-name|--timeout|--limit|--since|--before|--epoch|--count|--sub|--secret|\
        --ttl|--channel|--info|--claims|--kid|--section|--user|--prefix|--cursor|--token-command|--subscribe-token)
            return ;;
    esac

    # The command is the first word that is not a global option or its value.
    cmd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
            --url|--token|--api-key|--cafile|--tls-name|--timeout) ((i++)); continue ;;
            -*) continue ;;
        esac
        cmd=$w
        break
    done

    local opts=
    case $cmd in
        "") COMPREPLY=($(compgen -W "$commands $globals" -- "$cur")); return ;;
        pub) opts="--string" ;;
        sub) opts="--since --epoch --count --token-command --subscribe-token" ;;
        history) opts="--limit --since --before --reverse" ;;
        presence) opts= ;;
        state)
            if ((COMP_CWORD == i + 1)); then
                COMPREPLY=($(compgen -W "get set incr del reset" -- "$cur")); return
            fi
            opts="--string" ;;
        seats)
            if ((COMP_CWORD == i + 1)); then
                COMPREPLY=($(compgen -W "hold confirm release waitlist waitlist-leave" -- "$cur")); return
            fi
            opts="--ttl --section --user" ;;
        stats) opts="--prefix --limit --cursor" ;;
        token) opts="--sub --config --secret --key --ttl --channel --info --claims --kid" ;;
        check-config)
            if [[ $cur != -* ]]; then COMPREPLY=($(compgen -f -- "$cur")); return; fi ;;
    esac
    COMPREPLY=($(compgen -W "$opts $globals" -- "$cur"))
}
complete -F _herald_cli herald-cli
