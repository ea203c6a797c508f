//! Opening a replication connection: TCP, the server's greeting, TLS when
//! asked for, and the login with `mysql_native_password` or
//! `caching_sha2_password` (MySQL 8+'s default; over plain TCP its full login
//! encrypts the password with the server's RSA key, as mysql_async does).
//! The packets come from mysql_common, which mysql_async builds them with too.

use mysql_async::Opts;
use mysql_common::constants::{CapabilityFlags, UTF8MB4_GENERAL_CI};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, AuthSwitchRequest, HandshakePacket, HandshakeResponse, SslRequest};
use mysql_common::proto::MySerialize;

use super::DumpError;
use super::wire::{MAX_PAYLOAD, Wire};

/// What a replication connection asks of the server: 4.1 protocol with
/// plugin logins, nothing more (no database, no compression, no multi-statements).
fn wanted() -> CapabilityFlags {
    CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_TRANSACTIONS
}

/// A logged-in connection and the capabilities both ends agreed on.
pub struct LoggedIn {
    pub wire: Wire,
    pub capabilities: CapabilityFlags,
}

/// Connects to the server `opts` names and logs in as its user.
pub async fn log_in(opts: &Opts) -> Result<LoggedIn, DumpError> {
    let host = opts.ip_or_hostname().to_owned();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), opts.tcp_port())).await.map_err(DumpError::io("connect"))?;
    tcp.set_nodelay(true).map_err(DumpError::io("connect"))?;
    let mut wire = Wire::new(Box::new(tcp));
    let greeting = wire.read().await.map_err(DumpError::io("greeting"))?;
    if greeting.first() == Some(&0xFF) {
        return Err(DumpError::server(&greeting, CapabilityFlags::empty()));
    }
    let handshake = ParseBuf(&greeting).parse::<HandshakePacket>(()).map_err(DumpError::io("greeting"))?;
    let mut nonce = handshake.scramble_1_ref().to_vec();
    nonce.extend_from_slice(handshake.scramble_2_ref().unwrap_or_default());
    nonce.resize(20, 0); // the trailing NUL goes; a short scramble is padded, as the server does
    let version = handshake.server_version_parsed().unwrap_or((0, 0, 0));
    let mut capabilities = handshake.capabilities() & wanted();
    let secure = opts.ssl_opts().is_some();
    if let Some(ssl) = opts.ssl_opts() {
        if !handshake.capabilities().contains(CapabilityFlags::CLIENT_SSL) {
            return Err(DumpError::Tls("the server does not offer TLS; enable it on the server or set mysql.tls.mode".into()));
        }
        capabilities |= CapabilityFlags::CLIENT_SSL;
        send(&mut wire, &SslRequest::new(capabilities, MAX_PAYLOAD as u32, UTF8MB4_GENERAL_CI as u8)).await?;
        let connector = super::tls::connector(ssl).await.map_err(DumpError::Tls)?;
        let name = super::tls::server_name(ssl.tls_hostname_override().unwrap_or(&host)).map_err(DumpError::Tls)?;
        wire = wire
            .upgrade(|io| async move {
                let tls = connector.connect(name, io).await?;
                Ok(Box::new(tls) as Box<dyn super::wire::Io>)
            })
            .await
            .map_err(|e| DumpError::Tls(e.to_string()))?;
    }
    let mut plugin = match handshake.auth_plugin() {
        Some(AuthPlugin::CachingSha2Password) => AuthPlugin::CachingSha2Password,
        _ => AuthPlugin::MysqlNativePassword,
    };
    let pass = opts.pass();
    let data = plugin.gen_data(pass, &nonce);
    let response = HandshakeResponse::new(
        data.as_deref(),
        version,
        opts.user().map(str::as_bytes),
        None::<&[u8]>,
        Some(plugin.clone()),
        capabilities,
        None,
        MAX_PAYLOAD as u32,
    );
    send(&mut wire, &response).await?;
    let mut switched = false;
    loop {
        let packet = wire.read().await.map_err(DumpError::io("login"))?;
        match packet.first() {
            Some(0x00) => return Ok(LoggedIn { wire, capabilities }),
            Some(0xFF) => return Err(DumpError::server(&packet, capabilities)),
            Some(0xFE) if !switched => {
                switched = true;
                let switch = ParseBuf(&packet).parse::<AuthSwitchRequest>(()).map_err(DumpError::io("login"))?;
                plugin = match switch.auth_plugin() {
                    AuthPlugin::CachingSha2Password => AuthPlugin::CachingSha2Password,
                    AuthPlugin::MysqlNativePassword => AuthPlugin::MysqlNativePassword,
                    other => return Err(unsupported(&other)),
                };
                nonce = switch.plugin_data().strip_suffix(&[0]).unwrap_or(switch.plugin_data()).to_vec();
                match plugin.gen_data(pass, &nonce) {
                    Some(data) => send(&mut wire, &data).await?,
                    None => wire.write(&[]).await.map_err(DumpError::io("login"))?,
                }
            }
            // caching_sha2_password: 1 = more data; 3 = the cached login
            // matched (an OK follows), 4 = a full login is needed.
            Some(0x01) if plugin == AuthPlugin::CachingSha2Password => match packet.get(1) {
                Some(0x03) => {}
                Some(0x04) => full_sha2_login(&mut wire, pass.unwrap_or_default(), &nonce, secure).await?,
                _ => return Err(DumpError::Protocol(format!("unexpected login packet {:02x?}", &packet[..packet.len().min(8)]))),
            },
            _ => return Err(DumpError::Protocol(format!("unexpected login packet {:02x?}", &packet[..packet.len().min(8)]))),
        }
    }
}

/// caching_sha2_password's full login: the password in clear over TLS,
/// else encrypted with the server's public RSA key (XOR the scramble, OAEP).
async fn full_sha2_login(wire: &mut Wire, pass: &str, nonce: &[u8], secure: bool) -> Result<(), DumpError> {
    let mut clear = pass.as_bytes().to_vec();
    clear.push(0);
    if secure {
        return wire.write(&clear).await.map_err(DumpError::io("login"));
    }
    wire.write(&[0x02]).await.map_err(DumpError::io("login"))?; // "send me your public key"
    let key = wire.read().await.map_err(DumpError::io("login"))?;
    let pem = key.strip_prefix(&[0x01]).ok_or_else(|| DumpError::Protocol("the server sent no public key".into()))?;
    for (i, byte) in clear.iter_mut().enumerate() {
        *byte ^= nonce[i % nonce.len()];
    }
    wire.write(&mysql_common::crypto::encrypt(&clear, pem)).await.map_err(DumpError::io("login"))
}

fn unsupported(plugin: &AuthPlugin<'_>) -> DumpError {
    let name = String::from_utf8_lossy(plugin.as_bytes()).into_owned();
    DumpError::Login(format!(
        "the server asks for the {name} login, which drugsync's replication connection does not speak: create the drugsync user IDENTIFIED WITH caching_sha2_password (MySQL) or mysql_native_password (MariaDB)"
    ))
}

/// Serialises a protocol structure and sends it as one payload.
pub async fn send(wire: &mut Wire, packet: &impl MySerialize) -> Result<(), DumpError> {
    let mut buf = Vec::new();
    packet.serialize(&mut buf);
    wire.write(&buf).await.map_err(DumpError::io("write"))
}
