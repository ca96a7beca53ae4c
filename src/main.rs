use wxauth::app::telemetry;
use wxauth::app::{shutdown_signal, Application};
use wxauth::config::Command;
use wxauth::sim::{PushTarget, Simulator};
use wxauth::Clock;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = match wxauth::config::file::parse_cli(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => match e.downcast::<clap::Error>() {
            Ok(clap_error) => clap_error.exit(),
            Err(e) => return Err(e),
        },
    };
    telemetry::init(&cli.config.log, cli.config.log_format);
    match cli.command {
        Some(Command::Sim(sim)) => {
            let apps = vec![(sim.app_id.clone(), sim.app_secret.expose().clone())];
            let running = Simulator::start(sim.listen, Clock::system(), apps).await?;
            if let Some(url) = sim.push_url.clone() {
                let token = sim.push_token.clone().ok_or_else(|| {
                    anyhow::anyhow!("--sim-push-url needs WXAUTH_WECHAT_PUSH_TOKEN (the push Token)")
                })?;
                let target = PushTarget {
                    url,
                    token,
                    encoding_aes_key: sim.push_aes_key.clone(),
                    mode: sim.push_mode,
                    format: sim.push_format,
                };
                running.set_push_target(&sim.app_id, target);
            }
            tracing::warn!(addr = %running.addr(), app_id = %sim.app_id, "WeChat simulator running");
            shutdown_signal().await;
            running.stop().await;
            Ok(())
        }
        Some(Command::Check(check)) => match wxauth::app::check::check(&check).await {
            Ok(true) => {
                println!("SERVING");
                Ok(())
            }
            Ok(false) => {
                println!("NOT_SERVING");
                std::process::exit(1)
            }
            Err(e) => {
                eprintln!("health check failed: {e:#}");
                std::process::exit(1)
            }
        },
        None => {
            let app = Application::build(&cli.config).await?;
            app.run_until(shutdown_signal()).await
        }
    }
}
